"""The resource graph in metrics, the request log and traces, and under one rate budget."""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.app import create_app
from gateway.config import Settings
from gateway.pcs.client import OPERATIONS
from gateway.pcs.model import shapes
from tests.support.gateway import Gateway, GatewayFactory
from tests.support.graph import DETAIL, EXPECTED_COLD, counts
from tests.support.metrics import family_samples, scrape
from tests.support.request_lines import request_lines
from tests.support.servers import Emulator, ServerThread


def test_metrics_count_each_operation_by_name_with_bounded_labels(
    gateway: Gateway, emulator: Emulator
) -> None:
    assert "errors" not in gateway.query(DETAIL, {"id": "demo-full"})
    samples = scrape(gateway)
    calls = family_samples(samples, "pcsgw_upstream_calls_total")
    assert calls == {
        (("operation", operation), ("outcome", "success"), ("region", "us-east-1")): float(count)
        for operation, count in EXPECTED_COLD.items()
    }
    # Labels name operations only: never an identifier, an ARN or a cursor.
    latency = family_samples(samples, "pcsgw_upstream_call_duration_seconds_count")
    assert {dict(labels)["operation"] for labels in latency} == set(EXPECTED_COLD)
    assert set(EXPECTED_COLD) <= set(OPERATIONS)
    assert "demo-full" not in gateway.http.get("/metrics").text
    assert counts(emulator) == EXPECTED_COLD


def test_the_request_log_line_carries_every_call_of_a_detail_query(
    gateway: Gateway, emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.requests")
    response = gateway.http.post(
        "/graphql", json={"query": DETAIL, "variables": {"id": "demo-full"}}
    )
    assert "errors" not in response.json()
    [line] = request_lines(caplog, response.headers["x-request-id"])
    assert (line["operation"], line["outcome"]) == ("ClusterDetail", "success")
    assert line["cache"] == "miss"
    log = emulator.http.get("/_emulator/calls").json()["log"]
    assert len(log) == sum(EXPECTED_COLD.values())
    assert sorted(line["aws_request_ids"]) == sorted(entry["requestId"] for entry in log)


@pytest.fixture
def traced(start_gateway: GatewayFactory) -> Iterator[tuple[str, InMemorySpanExporter]]:
    """A gateway whose spans land in memory (start_gateway points it at the emulator)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    server = ServerThread(create_app(Settings(), tracer_provider=provider)).start()
    try:
        yield server.url, exporter
    finally:
        server.stop()


def named(spans: tuple[ReadableSpan, ...], name: str) -> list[dict[str, Any]]:
    return [dict(span.attributes or {}) for span in spans if span.name == name]


def test_spans_name_the_cluster_and_the_queue_or_node_group_apart(
    traced: tuple[str, InMemorySpanExporter],
) -> None:
    url, exporter = traced
    query = (
        '{ queue(cluster: "demo-full", identifier: "gpu") { name tags { key } } '
        'computeNodeGroup(cluster: "demo-full", identifier: "login") { name } }'
    )
    answer = httpx.post(f"{url}/graphql", json={"query": query}, timeout=30).json()
    assert "errors" not in answer, answer
    spans = exporter.get_finished_spans()
    [field] = named(spans, "Query.queue")
    assert field["aws.pcs.cluster_identifier"] == "demo-full"
    assert field["aws.pcs.resource_identifier"] == "gpu"
    [group_field] = named(spans, "Query.computeNodeGroup")
    assert group_field["aws.pcs.resource_identifier"] == "login"
    [get_queue] = named(spans, "PCS.GetQueue")
    assert (get_queue["rpc.method"], get_queue["aws.pcs.cluster_identifier"]) == (
        "GetQueue",
        "demo-full",
    )
    assert get_queue["aws.pcs.resource_identifier"] == "gpu"
    [get_group] = named(spans, "PCS.GetComputeNodeGroup")
    assert get_group["aws.pcs.resource_identifier"] == "login"
    [tags] = named(spans, "PCS.ListTagsForResource")
    assert re.fullmatch(
        r"arn:aws:pcs:us-east-1:\d+:cluster/pcs_\w+/queue/pcs_\w+",
        str(tags["aws.pcs.resource_identifier"]),
    )
    assert "aws.pcs.cluster_identifier" not in tags


def test_a_burst_of_mixed_operations_draws_from_one_budget(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    # Five tokens for the region, hardly any refill: every operation takes from them.
    gateway = start_gateway(
        pcs_rate_limit_per_second=0.01,
        pcs_rate_limit_burst=5,
        pcs_rate_limit_max_wait_seconds=0,
    )
    answer = gateway.query(DETAIL, {"id": "demo-full"})
    assert answer["data"]["cluster"]["name"] == "demo-full"
    assert {e["extensions"]["code"] for e in answer["errors"]} == {"THROTTLED"}
    sent = counts(emulator)
    assert sum(sent.values()) == 5
    assert sent["GetCluster"] == 1 and len(sent) >= 2, sent
    samples = scrape(gateway)
    calls = family_samples(samples, "pcsgw_upstream_calls_total")
    outcomes: Counter[str] = Counter()
    for labels, value in calls.items():
        outcomes[dict(labels)["outcome"]] += int(value)
    assert outcomes["success"] == 5
    rejected = samples[("pcsgw_upstream_ratelimit_rejections_total", (("region", "us-east-1"),))]
    assert outcomes["held_back"] == rejected
    assert outcomes["held_back"] > 0
    assert set(outcomes) == {"success", "held_back"}


def _members(shape: str, seen: set[str] | None = None) -> set[str]:
    """Every member name below a model shape, recursively."""
    seen = set() if seen is None else seen
    if shape in seen:
        return set()
    seen.add(shape)
    found: set[str] = set()
    body = shapes()[shape]
    for name, member in body.get("members", {}).items():
        found.add(name)
        found |= _members(member["shape"], seen)
    for key in ("member", "key", "value"):
        if key in body:
            found |= _members(body[key]["shape"], seen)
    return found


SECRET = re.compile(r"secret|password|credential|private_?key", re.IGNORECASE)


@pytest.mark.parametrize("shape", ["Queue", "ComputeNodeGroup"])
def test_queues_and_node_groups_carry_no_secret_reference_to_guard(shape: str) -> None:
    # The walk finds the cluster's guarded references, so it would find new ones here.
    assert {"secretArn", "secretVersion"} <= {m for m in _members("Cluster") if SECRET.search(m)}
    assert {m for m in _members(shape) if SECRET.search(m)} == set()


READER_KEY = "graph-reader-key-0123456789"
ADMIN_KEY = "graph-admin-key-0123456789"
GUARDED_PATHS = """
{
  queue(cluster: "demo-full", identifier: "gpu") {
    name
    cluster { name slurmConfiguration { authKey { secretArn } } }
  }
  clusterList(first: 100) {
    nodes { name slurmConfiguration { jwtAuth { jwtKey { secretArn } } } }
  }
}
"""


def test_the_field_guard_holds_on_every_path_to_a_secret_reference(
    start_gateway: GatewayFactory,
) -> None:
    gateway = start_gateway(api_keys=f"{READER_KEY},{ADMIN_KEY}:pcs-gateway:secrets")

    def as_caller(key: str) -> Any:
        response = gateway.http.post(
            "/graphql", json={"query": GUARDED_PATHS}, headers={"x-api-key": key}
        )
        return response.json()

    admin, reader = as_caller(ADMIN_KEY), as_caller(READER_KEY)
    assert "errors" not in admin, admin
    key = admin["data"]["queue"]["cluster"]["slurmConfiguration"]["authKey"]
    assert key["secretArn"].startswith("arn:aws:secretsmanager:")
    assert reader["data"]["queue"]["name"] == "gpu"
    assert reader["data"]["queue"]["cluster"]["slurmConfiguration"]["authKey"] is None
    nodes = reader["data"]["clusterList"]["nodes"]
    index = [n["name"] for n in nodes].index("demo-full")
    assert nodes[index]["slurmConfiguration"]["jwtAuth"] is None
    forbidden = {tuple(e["path"]) for e in reader["errors"]}
    assert ("queue", "cluster", "slurmConfiguration", "authKey") in forbidden
    assert ("clusterList", "nodes", index, "slurmConfiguration", "jwtAuth") in forbidden
    assert {e["extensions"]["code"] for e in reader["errors"]} == {"FORBIDDEN"}
    assert "secretsmanager" not in str(reader)
