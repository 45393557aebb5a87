"""The compiled lane answers a known query in front of Starlette exactly as the view would.

Each test runs two gateways against the same emulator, equal but for the lane (off in the
reference, whose known queries run by the same plans behind Starlette and Strawberry's
view), and compares what the HTTP client sees: status, headers, body, the request log
line and the metrics.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from gateway.app import create_app
from gateway.config import Settings
from gateway.emulator.seed import minimal
from gateway.graphql.compiler import Plans
from gateway.http.view import VARY
from tests.support.gateway import Gateway, GatewayFactory
from tests.support.request_lines import request_lines
from tests.support.servers import Emulator, ServerThread

KEY = "reader-key-0123456789abcdef"
CALLER = {"x-api-key": KEY}
QUERY = "query ClusterName($i: String!) { cluster(identifier: $i) { name status } }"
#: Headers made afresh for each response, or sized by a body that states its own age.
PER_RESPONSE = {"date", "server", "x-request-id", "content-length"}


def plans(gateway: Gateway) -> Plans:
    found = gateway.app.state.gateway.graphql.plans
    assert isinstance(found, Plans)
    return found


def lane_and_reference(start_gateway: GatewayFactory, **settings: Any) -> tuple[Gateway, Gateway]:
    common: dict[str, Any] = {"api_keys": KEY, "answer_cache_max_entries": 0, **settings}
    return start_gateway(**common), start_gateway(**common, compiled_lane=False)


def headers_of(response: httpx.Response) -> list[tuple[str, str]]:
    return sorted((k, v) for k, v in response.headers.items() if k not in PER_RESPONSE)


def answer_of(response: httpx.Response) -> Any:
    """The answer but the request ids PCS gave each call."""
    answer = response.json()
    for error in answer.get("errors", []):
        (error.get("extensions") or {}).pop("requestId", None)
    return answer


def known(gateway: Gateway, method: str, **request: Any) -> httpx.Response:
    """The third request of a document: seen, compiled by the Strawberry path, then known."""
    for _ in range(2):
        gateway.http.request(method, "/graphql", **request)
    return gateway.http.request(method, "/graphql", **request)


def test_a_known_post_gets_the_same_status_headers_and_body_from_the_lane(
    start_gateway: GatewayFactory,
) -> None:
    lane, reference = lane_and_reference(start_gateway)
    request = {"json": {"query": QUERY, "variables": {"i": "demo-active"}}, "headers": CALLER}
    served, expected = known(lane, "POST", **request), known(reference, "POST", **request)
    assert plans(lane).stats.lane_served == 1
    assert plans(reference).stats.lane_served == 0
    assert served.status_code == expected.status_code == 200
    assert headers_of(served) == headers_of(expected)
    assert served.headers["content-type"] == "application/json"
    assert (
        served.json()
        == expected.json()
        == {"data": {"cluster": {"name": "demo-active", "status": "ACTIVE"}}}
    )
    assert served.headers["content-length"] == str(len(served.content))
    assert len(served.headers["x-request-id"]) > 0


def test_a_known_get_carries_the_same_cache_control_and_vary_from_the_lane(
    start_gateway: GatewayFactory,
) -> None:
    lane, reference = lane_and_reference(start_gateway)
    params = {"query": QUERY, "variables": json.dumps({"i": "demo-active"})}
    request = {"params": params, "headers": {**CALLER, "accept": "application/json"}}
    served, expected = known(lane, "GET", **request), known(reference, "GET", **request)
    assert plans(lane).stats.lane_served == 1
    assert served.status_code == expected.status_code == 200
    assert served.json() == expected.json()
    assert headers_of(served) == headers_of(expected)
    assert served.headers["vary"] == f"{VARY}, Origin"  # the view's, then CORS's
    # A caller's key was sent: private, as long as the cluster stays fresh.
    assert served.headers["cache-control"].startswith("private, max-age=")
    assert int(served.headers["cache-control"].rsplit("=", 1)[1]) > 0


def test_a_refreshed_or_failing_get_is_not_kept_by_caches_from_the_lane(
    start_gateway: GatewayFactory,
) -> None:
    lane, reference = lane_and_reference(start_gateway)
    query = "query R($i: String!, $r: Boolean!) { cluster(identifier: $i, refresh: $r) { name } }"
    for variables in ({"i": "demo-active", "r": True}, {"i": "error-not-found", "r": False}):
        params = {"query": query, "variables": json.dumps(variables)}
        request = {"params": params, "headers": CALLER}
        served, expected = known(lane, "GET", **request), known(reference, "GET", **request)
        assert answer_of(served) == answer_of(expected)
        assert headers_of(served) == headers_of(expected)
        assert served.headers["cache-control"] == "no-store"
    assert plans(lane).stats.lane_served == 1 + 3


def test_a_cross_origin_request_gets_the_same_cors_headers_from_the_lane(
    start_gateway: GatewayFactory,
) -> None:
    portal = "https://portal.example.com"
    lane, reference = lane_and_reference(start_gateway, cors_allow_origins=[portal])
    body = {"query": QUERY, "variables": {"i": "demo-active"}}
    params = {"query": QUERY, "variables": json.dumps(body["variables"])}
    for origin in (portal, "https://elsewhere.example.com"):
        headers = {**CALLER, "origin": origin}
        for method, sent in (
            ("POST", {"json": body, "headers": headers}),
            ("GET", {"params": params, "headers": headers}),
        ):
            served, expected = known(lane, method, **sent), known(reference, method, **sent)
            assert served.status_code == expected.status_code == 200
            assert served.json() == expected.json()
            assert headers_of(served) == headers_of(expected), (origin, method)
    served = lane.http.post("/graphql", json=body, headers={**CALLER, "origin": portal})
    assert served.headers["access-control-allow-origin"] == portal
    assert "x-request-id" in served.headers["access-control-expose-headers"]
    # Every request came from the lane once its document was known (POST and GET share it).
    assert plans(lane).stats.lane_served == 2 * 2 * 3 - 2 + 1
    # A preflight is CORS's alone.
    preflight = {"origin": portal, "access-control-request-method": "POST"}
    allowed = lane.http.options("/graphql", headers=preflight)
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == portal


def test_graphql_response_media_type_and_a_request_error_as_the_view_gives_them(
    start_gateway: GatewayFactory,
) -> None:
    lane, reference = lane_and_reference(start_gateway)
    accept = {**CALLER, "accept": "application/graphql-response+json"}
    # A failing field: a partial result, 200, served by the lane.
    failing = {"json": {"query": QUERY, "variables": {"i": "error-not-found"}}, "headers": accept}
    served, expected = known(lane, "POST", **failing), known(reference, "POST", **failing)
    assert plans(lane).stats.lane_served == 1
    assert served.status_code == expected.status_code == 200
    assert headers_of(served) == headers_of(expected)
    assert served.headers["content-type"] == "application/graphql-response+json"
    body = served.json()
    assert body["data"] == {"cluster": None}
    assert body["errors"][0]["path"] == ["cluster"]
    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    # Invalid variables of a known document: passed on, refused by Strawberry with 400.
    invalid = {"json": {"query": QUERY, "variables": {"i": 7}}, "headers": accept}
    refused = lane.http.post("/graphql", **invalid)
    expected = reference.http.post("/graphql", **invalid)
    assert plans(lane).stats.lane_fallbacks["variables"] == 1
    assert refused.status_code == expected.status_code == 400
    assert headers_of(refused) == headers_of(expected)
    assert refused.json() == expected.json()
    assert "data" not in refused.json()


def test_limits_that_read_variables_refuse_a_known_document_as_before(
    start_gateway: GatewayFactory,
) -> None:
    lane, reference = lane_and_reference(start_gateway, max_batch_size=2)
    query = "query Batch($ids: [String!]!) { clusters(identifiers: $ids) { name } }"
    small = {"json": {"query": query, "variables": {"ids": ["demo-active"]}}, "headers": CALLER}
    known(lane, "POST", **small)
    large = {"json": {"query": query, "variables": {"ids": ["a1", "a2", "a3"]}}, "headers": CALLER}
    for _ in range(2):  # values let through before never let these through
        refused = lane.http.post("/graphql", **large)
        expected = reference.http.post("/graphql", **large)
        assert (refused.status_code, refused.json()) == (expected.status_code, expected.json())
        assert refused.json()["data"] is None
        assert refused.json()["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "limit": 2}
    stats = plans(lane).stats
    assert (stats.lane_served, stats.lane_fallbacks["limits"]) == (1, 2)
    again = lane.http.post("/graphql", **small)
    assert again.json() == {"data": {"clusters": [{"name": "demo-active"}]}}
    assert stats.lane_served == 2


def test_remembered_variables_tell_a_default_from_a_value_sent(
    start_gateway: GatewayFactory,
) -> None:
    lane, reference = lane_and_reference(start_gateway)
    query = 'query D($i: String = "demo-active") { cluster(identifier: $i) { name } }'
    known(lane, "POST", json={"query": query}, headers=CALLER)
    names = []
    for variables in ({}, {"i": "demo-full"}, {}, {"i": None}, {"i": "demo-full"}, {}):
        body = {"query": query, "variables": variables}
        served = lane.http.post("/graphql", json=body, headers=CALLER)
        expected = reference.http.post("/graphql", json=body, headers=CALLER)
        assert (served.status_code, served.json()) == (expected.status_code, expected.json())
        names.append((served.json().get("data") or {}).get("cluster"))
    assert names[:3] == [{"name": "demo-active"}, {"name": "demo-full"}, {"name": "demo-active"}]
    assert names[3] is None  # null sent: not the default
    assert plans(lane).stats.lane_served == 1 + 6


def test_new_skip_and_include_decisions_are_compiled_behind_then_served_by_the_lane(
    start_gateway: GatewayFactory,
) -> None:
    lane, reference = lane_and_reference(start_gateway)
    query = (
        "query S($i: String!, $s: Boolean!) "
        "{ cluster(identifier: $i) { name status @include(if: $s) } }"
    )
    first = {"json": {"query": query, "variables": {"i": "demo-active", "s": False}}}
    known(lane, "POST", **first, headers=CALLER)
    other = {"query": query, "variables": {"i": "demo-active", "s": True}}
    answers = []
    for _ in range(2):  # compiled behind Starlette the first time, from the lane the second
        served = lane.http.post("/graphql", json=other, headers=CALLER)
        expected = reference.http.post("/graphql", json=other, headers=CALLER)
        assert served.json() == expected.json()
        answers.append(served.json())
    assert answers[0] == {"data": {"cluster": {"name": "demo-active", "status": "ACTIVE"}}}
    stats = plans(lane).stats
    assert (stats.lane_fallbacks["new_decisions"], stats.lane_served) == (1, 2)
    assert stats.compilations == 2


def test_a_lane_request_has_its_log_line_and_metrics(
    start_gateway: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.requests")
    lane, _ = lane_and_reference(start_gateway)
    body = {"query": QUERY, "variables": {"i": "error-not-found"}}
    for warm_up in ("lane-warm-up-1", "lane-warm-up-2"):
        lane.http.post("/graphql", json=body, headers={**CALLER, "x-request-id": warm_up})
        assert request_lines(caplog, warm_up)  # counted too: its line comes after its counts
    before = lane.http.get("/metrics").text
    response = lane.http.post(
        "/graphql", json=body, headers={**CALLER, "x-request-id": "lane-line-1"}
    )
    assert plans(lane).stats.lane_served == 1
    assert response.headers["x-request-id"] == "lane-line-1"
    [line] = request_lines(caplog, "lane-line-1")
    assert line["message"] == "POST /graphql 200"
    assert (line["operation"], line["operation_type"]) == ("ClusterName", "query")
    assert (line["outcome"], line["errors"], line["status"]) == ("partial", ["NOT_FOUND"], 200)
    assert line["cache"] == "negative_hit"
    after = lane.http.get("/metrics").text
    for sample in (
        'pcsgw_graphql_errors_total{code="NOT_FOUND"}',
        'pcsgw_graphql_operations_total{operation="ClusterName",outcome="partial"}',
        'pcsgw_http_requests_total{method="POST",route="/graphql",status="200"}',
        "pcsgw_compiled_lane_served_total",
    ):
        assert _sample(after, sample) == _sample(before, sample) + 1, sample


def test_a_lane_request_has_the_same_spans_as_through_the_view(
    start_gateway: GatewayFactory,  # points the gateways at the emulator
) -> None:
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    found = []
    for lane in (True, False):
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        settings = Settings(answer_cache_max_entries=0, compiled_lane=lane)
        app = create_app(settings, tracer_provider=provider)
        server = ServerThread(app).start()
        try:
            body = {"query": QUERY, "variables": {"i": "demo-active"}}
            for _ in range(2):
                httpx.post(f"{server.url}/graphql", json=body, timeout=30)
            exporter.clear()
            response = httpx.post(
                f"{server.url}/graphql", json=body, headers={"traceparent": traceparent}
            )
            assert response.status_code == 200
            # Only this request's trace: a warm-up's server span may end after its answer.
            trace_id = "0af7651916cd43dd8448eb211c80319c"
            spans = {span.name: span for span in _finished(exporter, trace_id)}
            served = app.state.gateway.graphql.plans.stats.lane_served
        finally:
            server.stop()
        request, resolver = spans["POST /graphql"], spans["Query.cluster"]
        assert resolver.parent is not None and resolver.parent.span_id == request.context.span_id
        attributes = dict(request.attributes or {})
        assert attributes.pop("pcsgw.request_id") == response.headers["x-request-id"]
        found.append((served, sorted(spans), attributes, dict(resolver.attributes or {})))
    (served, *through_lane), (_, *through_view) = found
    assert served == 1
    assert through_lane == through_view
    assert through_lane[1]["graphql.operation.name"] == "ClusterName"
    assert through_lane[1]["pcsgw.outcome"] == "success"


def _finished(exporter: InMemorySpanExporter, trace_id: str) -> list[Any]:
    """The trace's finished spans, once its server span (which ends after the answer) is in."""
    deadline = time.monotonic() + 10
    while True:
        spans = [
            s for s in exporter.get_finished_spans() if f"{s.context.trace_id:032x}" == trace_id
        ]
        if any(span.kind is SpanKind.SERVER for span in spans) or time.monotonic() > deadline:
            return spans
        time.sleep(0.02)


def test_a_body_too_large_or_not_json_is_passed_on_and_answered_as_before(
    start_gateway: GatewayFactory,
) -> None:
    lane, reference = lane_and_reference(start_gateway, max_body_bytes=1024)
    request = {"json": {"query": QUERY, "variables": {"i": "demo-active"}}, "headers": CALLER}
    known(lane, "POST", **request)  # the document is known: only the body decides
    large = {"query": QUERY, "variables": {"i": "demo-active", "pad": "x" * 2000}}
    not_json = b'{"query": "{ regions }"'
    headers = {**CALLER, "content-type": "application/json"}
    for content, reason in ((json.dumps(large).encode(), "body_limit"), (not_json, "malformed")):
        passed = lane.http.post("/graphql", content=content, headers=headers)
        expected = reference.http.post("/graphql", content=content, headers=headers)
        assert plans(lane).stats.lane_fallbacks[reason] == 1
        assert passed.status_code == expected.status_code
        assert passed.status_code in (400, 413)
        assert headers_of(passed) == headers_of(expected)
        assert passed.json() == expected.json()
    assert plans(lane).stats.lane_served == 1
    metrics = lane.http.get("/metrics").text
    for reason in ("body_limit", "malformed"):
        assert f'pcsgw_compiled_lane_fallbacks_total{{reason="{reason}"}} 1.0' in metrics


def test_a_document_named_by_its_persisted_hash_is_served_by_the_lane(
    start_gateway: GatewayFactory,
) -> None:
    lane, reference = lane_and_reference(start_gateway)
    sha256 = hashlib.sha256(QUERY.encode()).hexdigest()
    extensions = {"persistedQuery": {"version": 1, "sha256Hash": sha256}}
    variables = {"i": "demo-active"}
    for gateway in (lane, reference):
        sent = {"query": QUERY, "variables": variables, "extensions": extensions}
        registered = gateway.http.post("/graphql", json=sent, headers=CALLER)
        assert registered.json()["data"]["cluster"]["name"] == "demo-active"
    by_hash = {"json": {"variables": variables, "extensions": extensions}, "headers": CALLER}
    served, expected = known(lane, "POST", **by_hash), known(reference, "POST", **by_hash)
    stats = plans(lane).stats
    assert stats.lane_fallbacks["registration"] == 1  # registered once it validated
    assert stats.lane_served == 2  # the second and third by hash
    assert served.json() == expected.json()
    assert headers_of(served) == headers_of(expected)


def test_a_trusted_document_named_by_its_id_is_served_by_the_lane_and_others_refused(
    start_gateway: GatewayFactory, tmp_path: Path
) -> None:
    manifest = tmp_path / "persisted-documents.json"
    digest = hashlib.sha256(QUERY.encode()).hexdigest()
    manifest.write_text(json.dumps({digest: QUERY}))
    lane, reference = lane_and_reference(
        start_gateway, trusted_documents_file=manifest, trusted_documents_only=True
    )
    variables = {"i": "demo-active"}
    by_id = {"json": {"documentId": digest, "variables": variables}, "headers": CALLER}
    served, expected = known(lane, "POST", **by_id), known(reference, "POST", **by_id)
    assert plans(lane).stats.lane_served == 1
    assert served.json() == expected.json()
    assert served.json() == {"data": {"cluster": {"name": "demo-active", "status": "ACTIVE"}}}
    get = {"params": {"documentId": digest, "variables": json.dumps(variables)}, "headers": CALLER}
    assert lane.http.get("/graphql", **get).json() == served.json()
    assert plans(lane).stats.lane_served == 2
    # A document the manifest does not list is refused, as only listed ones may run.
    unlisted = "query Other($i: String!) { cluster(identifier: $i) { name } }"
    as_text = {"query": unlisted, "variables": variables}
    refused = lane.http.post("/graphql", json=as_text, headers=CALLER)
    expected = reference.http.post("/graphql", json=as_text, headers=CALLER)
    assert refused.status_code == expected.status_code == 400
    assert refused.json() == expected.json()
    assert refused.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_IN_LIST"
    assert plans(lane).stats.lane_fallbacks["persisted_query"] == 1


def test_what_plans_do_not_cover_passes_on_by_reason(start_gateway: GatewayFactory) -> None:
    lane, reference = lane_and_reference(start_gateway)
    for query, reason in (
        ('subscription S { clusterUpdated(identifier: "demo-active") { name } }', "subscription"),
        ("{ __schema { queryType { name } } }", "introspection"),
    ):
        for _ in range(3):
            request = {"json": {"query": query}, "headers": CALLER}
            passed = lane.http.post("/graphql", **request)
            expected = reference.http.post("/graphql", **request)
            assert (passed.status_code, passed.json()) == (expected.status_code, expected.json())
            assert headers_of(passed) == headers_of(expected)
        assert plans(lane).stats.lane_fallbacks[reason] == 1, plans(lane).stats.lane_fallbacks
    assert plans(lane).stats.lane_served == 0


def test_an_answer_the_lane_wrote_is_kept_by_the_answer_cache(
    start_gateway: GatewayFactory,
) -> None:
    gateway = start_gateway(api_keys=KEY, cache_ttl_settled_seconds=60)
    bodies = [{"query": QUERY, "variables": {"i": name}} for name in ("a1", "a2", "demo-active")]
    # Two other variable sets make the plan; the third set's first answer is the lane's.
    for body in bodies:
        first = gateway.http.post("/graphql", json=body, headers=CALLER)
    assert plans(gateway).stats.lane_served == 1
    again = gateway.http.post("/graphql", json=bodies[-1], headers=CALLER)
    assert again.json() == first.json()
    assert gateway.app.stats.hits == 1
    assert plans(gateway).stats.lane_served == 1


def test_a_caller_the_gate_refuses_never_gets_a_lane_answer(
    start_gateway: GatewayFactory,
) -> None:
    lane, reference = lane_and_reference(start_gateway, rate_limit="3/minute")
    body = {"query": QUERY, "variables": {"i": "demo-active"}}
    known(lane, "POST", json=body, headers=CALLER)  # spends the caller's three requests
    assert plans(lane).stats.lane_served == 1
    for _ in range(3):
        reference.http.post("/graphql", json=body, headers=CALLER)
    for headers in ({"x-api-key": "not-a-key-0123456789abcdef"}, {}, CALLER):
        refused = lane.http.post("/graphql", json=body, headers=headers)
        expected = reference.http.post("/graphql", json=body, headers=headers)
        assert refused.status_code == expected.status_code
        assert refused.status_code in (401, 429)
        assert refused.json() == expected.json()
        assert "data" not in refused.json()
    stats = plans(lane).stats
    assert (stats.lane_served, stats.lane_fallbacks["not_admitted"]) == (1, 3)


def test_the_lane_turned_off_leaves_known_queries_to_the_view(
    start_gateway: GatewayFactory,
) -> None:
    gateway = start_gateway(compiled_lane=False, answer_cache_max_entries=0)
    known(gateway, "POST", json={"query": QUERY, "variables": {"i": "demo-active"}})
    stats = plans(gateway).stats
    assert (stats.lane_served, stats.lane_fallbacks, stats.executions) == (0, {}, 2)


def _sample(metrics: str, name: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_rendered_cluster_part_follows_the_clusters_value(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    # Answer cache off: every request runs the plan; the lane renders a cluster's part once
    # per value of the cluster, so a new value must show at once, and its ages move on.
    gateway = start_gateway(api_keys=KEY, answer_cache_max_entries=0, cache_ttl_settled_seconds=0.5)
    query = "query S($i: String!) { cluster(identifier: $i) { status freshness { ageSeconds } } }"
    body = {"query": query, "variables": {"i": "demo-active"}}
    first = known(gateway, "POST", json=body, headers=CALLER).json()
    assert first["data"]["cluster"]["status"] == "ACTIVE"
    emulator.put_cluster(minimal("demo-active", status="UPDATING"))
    time.sleep(0.2)
    held = gateway.http.post("/graphql", json=body, headers=CALLER).json()
    assert held["data"]["cluster"]["status"] == "ACTIVE"  # the value held is still fresh
    assert held["data"]["cluster"]["freshness"]["ageSeconds"] >= 0.2
    time.sleep(0.4)
    renewed = gateway.http.post("/graphql", json=body, headers=CALLER).json()
    assert renewed["data"]["cluster"]["status"] == "UPDATING"
    assert renewed["data"]["cluster"]["freshness"]["ageSeconds"] < 0.2
    assert plans(gateway).stats.lane_served == 3


def test_a_rendered_cluster_part_is_never_shared_across_secrets_scopes(
    start_gateway: GatewayFactory,
) -> None:
    admin = "admin-key-0123456789abcdef0"
    gateway = start_gateway(
        api_keys=f"{KEY},{admin}:pcs-gateway:secrets", answer_cache_max_entries=0
    )
    query = (
        "query R($i: String!) { cluster(identifier: $i) { name"
        " slurmConfiguration { authKey { secretArn } } } }"
    )
    body = {"query": query, "variables": {"i": "demo-full"}}
    shown = known(gateway, "POST", json=body, headers={"x-api-key": admin}).json()
    withheld = gateway.http.post("/graphql", json=body, headers=CALLER).json()
    again_shown = gateway.http.post("/graphql", json=body, headers={"x-api-key": admin}).json()
    again_withheld = gateway.http.post("/graphql", json=body, headers=CALLER).json()
    assert plans(gateway).stats.lane_served == 4
    assert shown == again_shown and "errors" not in shown
    assert shown["data"]["cluster"]["slurmConfiguration"]["authKey"]["secretArn"]
    assert again_withheld == withheld
    assert withheld["data"]["cluster"]["slurmConfiguration"]["authKey"] is None
    assert [error["extensions"]["code"] for error in withheld["errors"]] == ["FORBIDDEN"]
    assert withheld["errors"][0]["path"] == ["cluster", "slurmConfiguration", "authKey"]


def test_a_lane_request_that_fails_gets_a_plain_500_with_its_id_line_and_count(
    start_gateway: GatewayFactory,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.requests")
    lane, _ = lane_and_reference(start_gateway)
    body = {"query": QUERY, "variables": {"i": "demo-active"}}
    for _ in range(2):
        lane.http.post("/graphql", json=body, headers=CALLER)
    before = lane.http.get("/metrics").text

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret detail of a failure")

    # A fault inside the lane, after it took the request: the code that must not leak.
    monkeypatch.setattr(Plans, "run", broken)
    response = lane.http.post("/graphql", json=body, headers={**CALLER, "x-request-id": "boom-1"})
    assert plans(lane).stats.lane_served == 1
    assert response.status_code == 500
    assert response.text == "Internal Server Error"
    assert response.headers["x-request-id"] == "boom-1"
    [line] = request_lines(caplog, "boom-1")
    assert (line["message"], line["status"]) == ("POST /graphql 500", 500)
    after = lane.http.get("/metrics").text
    sample = 'pcsgw_http_requests_total{method="POST",route="/graphql",status="500"}'
    assert _sample(after, sample) == _sample(before, sample) + 1
    in_flight = "pcsgw_http_requests_in_flight"
    assert _sample(after, in_flight) == _sample(before, in_flight)
    # The cause is logged for the operator, with the request's id.
    [failure] = [r for r in caplog.records if r.name == "gateway.http.compiled_lane"]
    assert "boom-1" in failure.getMessage() and failure.exc_info is not None
