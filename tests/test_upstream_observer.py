"""The data path's observer interface: labels bounded by observability, a quiet default."""

from __future__ import annotations

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import create_app
from gateway.config import Settings
from gateway.pcs import errors
from gateway.pcs.client import PcsClient
from gateway.service import store as cache
from gateway.service.clusters import ClusterService
from gateway.service.store import CacheStats, CacheStore
from tests.support.gateway import GatewayFactory
from tests.support.servers import Emulator, ServerThread

QUERY = "query($i: String!) { cluster(identifier: $i) { name } }"
#: A code PCS's model does not define; an AWS front end may still send it.
UNDOCUMENTED = "ServiceUnavailableException"


def test_an_undocumented_error_code_is_counted_and_traced_as_other(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    # start_gateway points gateways at the emulator; this one needs a tracer of its own.
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = create_app(Settings(pcs_max_attempts=1), tracer_provider=provider)
    server = ServerThread(app).start()
    try:
        emulator.faults({"clusters": {"demo-active": {"error": UNDOCUMENTED, "httpStatus": 503}}})
        answer = httpx.post(
            f"{server.url}/graphql", json={"query": QUERY, "variables": {"i": "demo-active"}}
        ).json()
        metrics = httpx.get(f"{server.url}/metrics").text
    finally:
        emulator.faults(None)
        server.stop()
    # The client reports the code PCS sent; the error keeps it for the caller.
    assert answer["errors"][0]["extensions"]["awsErrorCode"] == UNDOCUMENTED
    calls = {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == "pcsgw_upstream_calls_total"
    }
    other = (("operation", "GetCluster"), ("outcome", "other"), ("region", "us-east-1"))
    assert calls == {other: 1}
    (call,) = [span for span in exporter.get_finished_spans() if span.name == "PCS.GetCluster"]
    assert call.attributes is not None
    assert call.attributes["error.type"] == "other"
    assert call.attributes["http.response.status_code"] == 503
    assert call.status.status_code is StatusCode.ERROR
    assert (call.status.description or "").startswith("UpstreamUnavailable")


async def test_the_data_path_without_observers_answers_and_fails_as_usual(
    emulator: Emulator,
) -> None:
    emulator.reset()
    settings = Settings(pcs_max_attempts=1)
    stats = CacheStats()
    store = CacheStore(cache.make_backend(settings, stats), name="memory", stats=stats)
    try:
        async with PcsClient.open(settings, endpoint_url=emulator.url) as client:
            service = ClusterService(client, store, settings, stats)
            try:
                first = await service.get("demo-active")
                again = await service.get("demo-active")
                with pytest.raises(errors.ResourceNotFound) as missing:
                    await service.get("error-not-found")
            finally:
                await service.close()
    finally:
        await store.close()
    assert first.cluster.name == again.cluster.name == "demo-active"
    assert first.request_id is not None
    assert missing.value.aws_error_code == "ResourceNotFoundException"
    assert (stats.misses, stats.hits) == (2, 1)
    assert emulator.calls() == 2
