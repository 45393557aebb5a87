"""Metrics at /metrics: HTTP, GraphQL errors, cache, upstream limiter and breaker."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Gateway
from tests.servers import Emulator

QUERY = "query($i: String!) { cluster(identifier: $i) { name } }"


def scrape(gateway: Gateway) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = gateway.http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_metrics_count_requests_cache_outcomes_and_error_codes(
    gateway: Gateway, emulator: Emulator
) -> None:
    for identifier in ("demo-active", "demo-active", "demo-active", "error-not-found"):
        gateway.query(QUERY, {"i": identifier})
    samples = scrape(gateway)
    memory = (("backend", "memory"),)
    # Repeats are answered by the answer cache in front, or by the cluster cache.
    assert samples[("pcsgw_answer_cache_hits_total", ())] == 2
    assert samples[("pcsgw_cache_hits_total", memory)] == 0
    assert samples[("pcsgw_cache_misses_total", memory)] == 2
    assert samples[("pcsgw_cache_upstream_calls_total", memory)] == emulator.calls() == 2
    assert samples[("pcsgw_graphql_errors_total", (("code", "NOT_FOUND"),))] == 1
    graphql = (("method", "POST"), ("route", "/graphql"), ("status", "200"))
    assert samples[("pcsgw_http_requests_total", graphql)] == 4
    assert samples[("pcsgw_upstream_breaker_state", (("state", "closed"),))] == 1
    assert ("pcsgw_upstream_ratelimit_rejections_total", ()) in samples


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
