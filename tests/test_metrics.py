"""Metrics at /metrics: HTTP, GraphQL errors, cache, upstream limiter and breaker."""

from __future__ import annotations

import pytest

from tests.support.gateway import Gateway, GatewayFactory
from tests.support.metrics import family_samples, scrape
from tests.support.servers import Emulator

QUERY = "query($i: String!) { cluster(identifier: $i) { name } }"
#: The region label of the one region these gateways serve.
EAST = ("region", "us-east-1")


# What this module pins is the app's behaviour, not the server's: no socket needed.
pytestmark = pytest.mark.gateway("in_process")


def test_metrics_count_requests_cache_outcomes_and_error_codes(
    gateway: Gateway, emulator: Emulator
) -> None:
    for identifier in ("demo-active", "demo-active", "demo-active", "error-not-found"):
        gateway.query(QUERY, {"i": identifier})
    samples = scrape(gateway)
    memory = (("backend", "memory"), ("region", "us-east-1"))
    # Repeats are answered by the answer cache in front, or by the cluster cache.
    assert samples[("pcsgw_answer_cache_hits_total", ())] == 2
    assert samples[("pcsgw_cache_hits_total", memory)] == 0
    assert samples[("pcsgw_cache_misses_total", memory)] == 2
    assert samples[("pcsgw_cache_upstream_calls_total", memory)] == emulator.calls() == 2
    assert samples[("pcsgw_graphql_errors_total", (("code", "NOT_FOUND"),))] == 1
    graphql = (("method", "POST"), ("route", "/graphql"), ("status", "200"))
    assert samples[("pcsgw_http_requests_total", graphql)] == 4
    assert samples[("pcsgw_upstream_breaker_state", (EAST, ("state", "closed")))] == 1
    assert ("pcsgw_upstream_ratelimit_rejections_total", (EAST,)) in samples


def test_metric_labels_never_carry_identifiers_or_addresses(gateway: Gateway) -> None:
    gateway.query(QUERY, {"i": "demo-full"})
    gateway.http.get("/no/such/path/demo-full")
    text = gateway.http.get("/metrics").text
    assert "demo-full" not in text
    assert "127.0.0.1" not in text
    assert 'route="other"' in text


def test_readiness_reports_the_breaker_without_failing_on_it(gateway: Gateway) -> None:
    ready = gateway.http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["pcsBreaker"] == "closed"


NAMED = "query {name}($i: String!) {{ cluster(identifier: $i) {{ name }} }}"


def test_a_scripted_mix_shows_exact_counts(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    # One attempt a call, so throttling and failures are not retried; two operation names.
    gateway = start_gateway(pcs_max_attempts=1, metrics_max_operation_names=2, max_body_bytes=1024)
    status = NAMED.format(name="ClusterStatus")
    for _ in range(3):  # a miss, then two answers of the answer cache
        assert gateway.query(status, {"i": "demo-active"})["data"]["cluster"]["name"]
    failing = NAMED.format(name="Failing")
    for identifier in (
        "error-not-found",
        "error-validation",
        "error-throttling",
        "error-conflict",
        "error-access-denied",
        "error-internal",
        "not valid!",  # refused by the gateway before PCS
    ):
        assert gateway.query(failing, {"i": identifier})["errors"]
    # A third name is past the bound; its cluster comes from the cluster cache.
    assert gateway.query(NAMED.format(name="Third"), {"i": "demo-active"})["data"]["cluster"]
    assert gateway.query("query Broken { cluster(")["errors"][0]["extensions"]["code"] == (
        "GRAPHQL_PARSE_FAILED"
    )
    assert gateway.query("query Invalid { nope }")["errors"]
    not_json = gateway.http.post(
        "/graphql", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert not_json.status_code == 400
    too_large = gateway.http.post("/graphql", json={"query": "{ __typename }", "x": "y" * 2048})
    assert too_large.status_code == 413

    samples = scrape(gateway)
    assert family_samples(samples, "pcsgw_graphql_operations_total") == {
        (("operation", "ClusterStatus"), ("outcome", "success")): 3,
        (("operation", "Failing"), ("outcome", "partial")): 7,
        (("operation", "other"), ("outcome", "success")): 1,
        (("operation", "unknown"), ("outcome", "refused")): 3,  # parse, not JSON, too large
        (("operation", "other"), ("outcome", "refused")): 1,  # a name never executed
    }
    assert family_samples(samples, "pcsgw_graphql_errors_total") == {
        (("code", "NOT_FOUND"),): 1,
        (("code", "BAD_USER_INPUT"),): 2,
        (("code", "THROTTLED"),): 1,
        (("code", "CONFLICT"),): 1,
        (("code", "FORBIDDEN"),): 1,
        (("code", "UPSTREAM_UNAVAILABLE"),): 1,
        (("code", "GRAPHQL_PARSE_FAILED"),): 1,
        (("code", "GRAPHQL_VALIDATION_FAILED"),): 1,
    }
    get_cluster = ("operation", "GetCluster")
    assert family_samples(samples, "pcsgw_upstream_calls_total") == {
        (get_cluster, ("outcome", outcome), EAST): 1
        for outcome in (
            "success",
            "ResourceNotFoundException",
            "ValidationException",
            "ThrottlingException",
            "ConflictException",
            "AccessDeniedException",
            "InternalServerException",
        )
    }
    assert samples[("pcsgw_upstream_call_duration_seconds_count", (get_cluster, EAST))] == 7
    assert emulator.calls() == 7
    memory = (("backend", "memory"), ("region", "us-east-1"))
    assert samples[("pcsgw_cache_misses_total", memory)] == 7
    assert samples[("pcsgw_cache_hits_total", memory)] == 1
    assert samples[("pcsgw_answer_cache_hits_total", ())] == 2
    http = family_samples(samples, "pcsgw_http_requests_total")
    graphql = (("method", "POST"), ("route", "/graphql"))
    assert http == {
        (*graphql, ("status", "200")): 13,
        (*graphql, ("status", "400")): 1,
        (*graphql, ("status", "413")): 1,
    }
    assert samples[("pcsgw_upstream_breaker_opened_total", (EAST,))] == 0
    assert samples[("pcsgw_upstream_breaker_refused_total", (EAST,))] == 0
    # The scrape itself is the one request in flight.
    assert samples[("pcsgw_http_requests_in_flight", ())] == 1


def test_an_unreachable_pcs_is_an_outcome_of_its_own(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    emulator.faults({"clusters": {"demo-active": {"reset": True}}})
    gateway = start_gateway(pcs_max_attempts=1)
    answer = gateway.query(QUERY, {"i": "demo-active"})
    assert answer["errors"][0]["extensions"]["code"] == "UPSTREAM_UNAVAILABLE"
    samples = scrape(gateway)
    assert family_samples(samples, "pcsgw_upstream_calls_total") == {
        (("operation", "GetCluster"), ("outcome", "unreachable"), EAST): 1
    }


def test_calls_the_open_breaker_keeps_from_pcs_are_counted(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    gateway = start_gateway(pcs_max_attempts=1, breaker_failure_threshold=1)
    for identifier in ("error-internal", "demo-active"):
        answer = gateway.query(QUERY, {"i": identifier})
        assert answer["errors"][0]["extensions"]["code"] == "UPSTREAM_UNAVAILABLE"
    assert emulator.calls() == 1
    samples = scrape(gateway)
    assert family_samples(samples, "pcsgw_upstream_calls_total") == {
        (("operation", "GetCluster"), ("outcome", "InternalServerException"), EAST): 1,
        (("operation", "GetCluster"), ("outcome", "circuit_open"), EAST): 1,
    }
    assert samples[("pcsgw_upstream_breaker_opened_total", (EAST,))] == 1
    assert samples[("pcsgw_upstream_breaker_refused_total", (EAST,))] == 1
    assert samples[("pcsgw_upstream_breaker_state", (EAST, ("state", "open")))] == 1


def test_calls_the_gateway_held_back_are_an_outcome_of_their_own(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    gateway = start_gateway(
        pcs_rate_limit_per_second=0.01, pcs_rate_limit_burst=1, pcs_rate_limit_max_wait_seconds=0
    )
    assert gateway.query(QUERY, {"i": "demo-active"})["data"]["cluster"]
    held = gateway.query(QUERY, {"i": "demo-full"})["errors"][0]["extensions"]
    assert held["code"] == "THROTTLED" and "awsErrorCode" not in held
    samples = scrape(gateway)
    assert family_samples(samples, "pcsgw_upstream_calls_total") == {
        (("operation", "GetCluster"), ("outcome", "success"), EAST): 1,
        (("operation", "GetCluster"), ("outcome", "held_back"), EAST): 1,
    }
    assert samples[("pcsgw_upstream_ratelimit_rejections_total", (EAST,))] == 1
    assert emulator.calls() == 1
