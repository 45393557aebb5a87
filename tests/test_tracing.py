"""OpenTelemetry: a span tree per request, the caller's trace continued, off by default."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from gateway.app import create_app
from gateway.cli import main
from gateway.config import Settings
from gateway.observe.tracing import Tracing, TracingError, check_environment
from tests.support.gateway import GatewayFactory
from tests.support.request_lines import request_lines
from tests.support.servers import Emulator, ServerThread

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_SPAN_ID = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_SPAN_ID}-01"
QUERY = 'query Status { cluster(identifier: "demo-active") { name status } }'


@pytest.fixture
def traced(start_gateway: GatewayFactory) -> Iterator[tuple[str, InMemorySpanExporter]]:
    """A gateway whose spans land in memory (the start_gateway fixture points it at PCS)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    server = ServerThread(create_app(Settings(), tracer_provider=provider)).start()
    try:
        yield server.url, exporter
    finally:
        server.stop()


def post(url: str, query: str, **headers: str) -> httpx.Response:
    response = httpx.post(f"{url}/graphql", json={"query": query}, headers=headers, timeout=30)
    assert response.status_code == 200
    return response


def by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    named = {span.name: span for span in spans}
    assert len(named) == len(spans), [span.name for span in spans]
    return named


def test_one_request_yields_a_span_tree_in_the_callers_trace(
    traced: tuple[str, InMemorySpanExporter], emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.requests")
    url, exporter = traced
    response = post(url, QUERY, traceparent=TRACEPARENT)
    # The request's log line names its trace.
    [line] = request_lines(caplog, response.headers["x-request-id"])
    assert line["trace_id"] == TRACE_ID
    spans = by_name(exporter.get_finished_spans())
    assert set(spans) == {"POST /graphql", "Query.cluster", "cache.lookup", "PCS.GetCluster"}
    request = spans["POST /graphql"]
    resolver, lookup, call = spans["Query.cluster"], spans["cache.lookup"], spans["PCS.GetCluster"]
    # One trace, the caller's; each span's parent is the one above it.
    assert {f"{span.context.trace_id:032x}" for span in spans.values()} == {TRACE_ID}
    assert request.parent is not None and request.parent.is_remote
    assert f"{request.parent.span_id:016x}" == PARENT_SPAN_ID
    assert resolver.parent is not None and resolver.parent.span_id == request.context.span_id
    assert lookup.parent is not None and lookup.parent.span_id == resolver.context.span_id
    assert call.parent is not None and call.parent.span_id == resolver.context.span_id
    assert (request.kind, call.kind) == (SpanKind.SERVER, SpanKind.CLIENT)
    aws_request_id = emulator.http.get("/_emulator/calls").json()["log"][-1]["requestId"]
    assert dict(request.attributes or {}) == {
        "http.request.method": "POST",
        "http.route": "/graphql",
        "url.path": "/graphql",
        "http.response.status_code": 200,
        "pcsgw.request_id": response.headers["x-request-id"],
        "graphql.operation.name": "Status",
        "graphql.operation.type": "query",
        "pcsgw.outcome": "success",
        "pcsgw.cache": "miss",
        "aws.request_ids": (aws_request_id,),
    }
    assert dict(lookup.attributes or {}) == {
        "pcsgw.cache.backend": "memory",
        "pcsgw.cache.outcome": "miss",
    }
    attributes = dict(call.attributes or {})
    assert attributes["rpc.system"] == "aws-api"
    assert (attributes["rpc.service"], attributes["rpc.method"]) == ("PCS", "GetCluster")
    assert attributes["aws.request_id"] == aws_request_id
    assert attributes["aws.pcs.cluster_identifier"] == "demo-active"
    assert attributes["cloud.region"] == "us-east-1"
    assert dict(resolver.attributes or {})["graphql.field.path"] == "cluster"


def test_an_answer_cache_hit_is_one_span_and_a_failed_call_an_error_span(
    traced: tuple[str, InMemorySpanExporter], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.requests")
    url, exporter = traced
    post(url, QUERY)
    # The first request's server span ends once its answer has gone: wait for it, so that
    # it is not taken for one of the hit's.
    deadline = time.monotonic() + 5
    while "POST /graphql" not in by_name(exporter.get_finished_spans()):
        assert time.monotonic() < deadline, "the first request's span never ended"
        time.sleep(0.01)
    exporter.clear()
    response = post(url, QUERY, traceparent=TRACEPARENT)
    [line] = request_lines(caplog, response.headers["x-request-id"])
    assert (line["cache"], line["trace_id"]) == ("answer", TRACE_ID)
    [hit] = exporter.get_finished_spans()
    assert hit.name == "POST /graphql"
    assert f"{hit.context.trace_id:032x}" == TRACE_ID
    assert dict(hit.attributes or {})["pcsgw.cache"] == "answer"
    assert hit.end_time is not None and hit.start_time is not None
    assert hit.end_time >= hit.start_time
    exporter.clear()
    answer = post(url, '{ cluster(identifier: "error-not-found") { name } }').json()
    spans = by_name(exporter.get_finished_spans())
    call = spans["PCS.GetCluster"]
    assert call.status.is_ok is False
    attributes = dict(call.attributes or {})
    assert attributes["error.type"] == "ResourceNotFoundException"
    assert attributes["aws.request_id"] == answer["errors"][0]["extensions"]["requestId"]
    assert attributes["http.response.status_code"] == 400


def test_a_batch_has_a_resolver_span_per_identifier(
    traced: tuple[str, InMemorySpanExporter],
) -> None:
    url, exporter = traced
    post(url, '{ clusters(identifiers: ["demo-active", "demo-full"]) { name } }')
    spans = exporter.get_finished_spans()
    paths = sorted(
        str(dict(span.attributes or {})["graphql.field.path"])
        for span in spans
        if span.name == "Query.clusters"
    )
    assert paths == ["clusters.0", "clusters.1"]
    assert sum(span.name == "PCS.GetCluster" for span in spans) == 2


class Collector(BaseHTTPRequestHandler):
    """An OTLP/HTTP receiver: keeps every ExportTraceServiceRequest posted to /v1/traces."""

    received: list[ExportTraceServiceRequest]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        if self.path == "/v1/traces":
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            self.received.append(request)
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.slow
def test_otel_variables_turn_on_export_over_otlp(
    start_gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler = type("Handler", (Collector,), {"received": []})
    collector = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=collector.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv(
            "OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{collector.server_port}"
        )
        monkeypatch.setenv("OTEL_SERVICE_NAME", "portal-gateway")
        gateway = start_gateway()
        assert gateway.query(QUERY)["data"]["cluster"]["name"] == "demo-active"
        gateway.app.state.gateway.observe.tracing.provider.force_flush()
    finally:
        collector.shutdown()
    spans = [
        (span.name, resource.resource)
        for request in handler.received
        for resource in request.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    ]
    assert {name for name, _ in spans} == {
        "POST /graphql",
        "Query.cluster",
        "cache.lookup",
        "PCS.GetCluster",
    }
    attributes = {a.key: a.value.string_value for a in spans[0][1].attributes}
    assert attributes["service.name"] == "portal-gateway"


def test_tracing_is_off_unless_otel_variables_ask(gateway: Any) -> None:
    assert gateway.app.state.gateway.observe.tracing is None
    assert Tracing.from_environment({}) is None
    assert Tracing.from_environment({"OTEL_TRACES_EXPORTER": "none"}) is None
    disabled = {"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"}
    assert Tracing.from_environment(disabled) is None
    on = Tracing.from_environment({"OTEL_TRACES_EXPORTER": "console"})
    assert on is not None
    on.shutdown()
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}
    on = Tracing.from_environment(endpoint)
    assert on is not None
    on.shutdown()


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER: 'zipkin' is not one of"),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "OTEL_EXPORTER_OTLP_PROTOCOL: only http/protobuf is supported",
        ),
    ],
)
def test_an_otel_setting_the_gateway_cannot_honour_stops_start_up_with_one_line(
    variables: dict[str, str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(TracingError, match=message):
        check_environment(variables)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert main(["serve", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"pcs-gateway: {message}")
    assert err.count("\n") == 1
