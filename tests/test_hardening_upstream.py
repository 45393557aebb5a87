"""Hardening of the upstream path: attempts counted as PCS counts them, brownouts, accounts."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.config import SettingsError, load_settings
from tests.support.gateway import Gateway, GatewayFactory
from tests.support.servers import Emulator

STATUS = 'query { cluster(identifier: "demo-active") { name status } }'
KEY = "reader-key-0123456789abcdef"


def samples(gateway: Gateway, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples of one metric family from /metrics, by their labels."""
    found = {}
    for family in text_string_to_metric_families(gateway.http.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def test_every_attempt_pcs_receives_is_counted_beside_the_logical_call(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    gateway = start_gateway(pcs_max_attempts=3)
    emulator.faults({"clusters": {"demo-active": {"error": "ThrottlingException", "times": 2}}})
    answer = gateway.query(STATUS)
    assert answer == {"data": {"cluster": {"name": "demo-active", "status": "ACTIVE"}}}
    received = emulator.calls()
    assert received == 3
    attempts = samples(gateway, "pcsgw_upstream_attempts_total")
    assert attempts == {
        (("operation", "GetCluster"), ("outcome", "ThrottlingException")): 2.0,
        (("operation", "GetCluster"), ("outcome", "success")): 1.0,
    }
    assert sum(attempts.values()) == received
    calls = samples(gateway, "pcsgw_upstream_calls_total")
    assert calls == {
        (("operation", "GetCluster"), ("outcome", "success"), ("region", "us-east-1")): 1.0
    }


def stale_paths(answer: dict[str, Any]) -> list[list[Any]]:
    return [entry["path"] for entry in answer.get("extensions", {}).get("stale", [])]


@pytest.mark.slow
def test_a_brownout_serves_the_stale_copy_at_the_deadline(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    gateway = start_gateway(
        request_deadline_seconds=1,
        pcs_read_timeout_seconds=5,
        pcs_max_attempts=1,
        cache_ttl_settled_seconds=0.3,
        breaker_failure_threshold=1,
        breaker_open_seconds=0.5,
    )
    fresh = gateway.query(STATUS)
    assert fresh == {"data": {"cluster": {"name": "demo-active", "status": "ACTIVE"}}}
    time.sleep(0.4)  # past its freshness
    emulator.faults({"clusters": {"demo-active": {"latencySeconds": 30}}})
    during = gateway.query(STATUS)
    assert during["data"] == fresh["data"]
    assert "errors" not in during
    assert stale_paths(during) == [["cluster"]]
    # The hung call fails at its read timeout and opens the breaker; once it half-opens,
    # the requests that join its probe get the stale copy at their deadline too.
    time.sleep(5.5)
    with ThreadPoolExecutor(3) as pool:
        joined = list(pool.map(lambda _: gateway.query(STATUS), range(3)))
    for answer in joined:
        assert answer["data"] == fresh["data"]
        assert stale_paths(answer) == [["cluster"]]
    assert emulator.identifiers().count("demo-active") == 3


def test_without_a_stale_copy_the_deadline_still_answers_upstream_unavailable(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    gateway = start_gateway(request_deadline_seconds=0.5, pcs_read_timeout_seconds=5)
    emulator.faults({"clusters": {"demo-active": {"latencySeconds": 2}}})
    answer = gateway.query(STATUS)
    assert answer["data"] == {"cluster": None}
    assert [error["extensions"]["code"] for error in answer["errors"]] == ["UPSTREAM_UNAVAILABLE"]


def test_retries_that_outlast_the_deadline_stop_a_production_start() -> None:
    with pytest.raises(SettingsError, match="REQUEST_DEADLINE_SECONDS"):
        load_settings(environment="production", api_keys=KEY, pcs_max_attempts=3)
    fits = load_settings(environment="production", api_keys=KEY)
    assert fits.pcs_retry_budget_seconds <= fits.request_deadline_seconds


@pytest.mark.redis
def test_deployments_of_different_accounts_sharing_redis_never_share_clusters(
    start_gateway: GatewayFactory,
    emulator: Emulator,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = start_gateway(cache_url=redis_url)
    assert first.query(STATUS)["data"]["cluster"]["name"] == "demo-active"
    assert emulator.calls() == 1
    # Same endpoint and region, other credentials: another account's view of PCS.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDOTHERACCOUNT")
    other = start_gateway(cache_url=redis_url)
    assert other.query(STATUS)["data"]["cluster"]["name"] == "demo-active"
    assert emulator.calls() == 2
    # A role's account names the key space when given; a configured namespace wins.
    monkeypatch.setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/pcs-gateway")
    role = start_gateway(cache_url=redis_url)
    assert ":123456789012:" in role.app.state.gateway.service.key("demo-active")
    named = start_gateway(cache_url=redis_url, cache_namespace="team-a")
    assert named.app.state.gateway.service.key("demo-active").startswith("pcsgw:v1:team-a:")
    # The same account again shares the entries: no call.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTESTGATEWAY")
    monkeypatch.delenv("AWS_ROLE_ARN")
    again = start_gateway(cache_url=redis_url)
    assert again.query(STATUS)["data"]["cluster"]["name"] == "demo-active"
    assert emulator.calls() == 2
    assert "AKIDTESTGATEWAY" not in again.app.state.gateway.service.key("demo-active")
