"""Upstream failures end to end: every cause mapped, deadlines, rate limit, circuit breaker."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest

from gateway.emulator.seed import minimal
from tests.conftest import AWS_TEST_ENVIRONMENT, Gateway, GatewayFactory
from tests.servers import Emulator, free_port

QUERY = "query($i: String!) { cluster(identifier: $i) { name } }"


def assert_clean(answer: Any) -> None:
    """No internals reach a client: no traceback, module path or credential."""
    text = json.dumps(answer)
    for leak in (
        "Traceback",
        ".py",
        "gateway.",
        "botocore",
        "aiohttp",
        AWS_TEST_ENVIRONMENT["AWS_SECRET_ACCESS_KEY"],
    ):
        assert leak not in text, leak


def failing(gateway: Gateway, identifier: str = "demo-active") -> dict[str, Any]:
    answer = gateway.query(QUERY, {"i": identifier})
    assert_clean(answer)
    assert answer["data"] == {"cluster": None}
    (error,) = answer["errors"]
    assert error["path"] == ["cluster"]
    extensions: dict[str, Any] = error["extensions"]
    return extensions


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ({"reset": True}, {"code": "UPSTREAM_UNAVAILABLE"}),
        ({"malformed": "garbage"}, {"code": "UPSTREAM_UNAVAILABLE"}),
        ({"malformed": "truncated"}, {"code": "UPSTREAM_UNAVAILABLE"}),
        ({"malformed": "empty"}, {"code": "UPSTREAM_UNAVAILABLE"}),
        (
            {"error": "ShinyNewException"},
            {"code": "UPSTREAM_UNAVAILABLE", "awsErrorCode": "ShinyNewException"},
        ),
    ],
    ids=["reset", "garbage", "truncated", "empty", "unknown-code"],
)
def test_broken_answers_map_to_documented_codes(
    start_gateway: GatewayFactory,
    emulator: Emulator,
    fault: dict[str, Any],
    expected: dict[str, str],
) -> None:
    gateway = start_gateway(pcs_max_attempts=1)
    emulator.faults({"clusters": {"demo-active": fault}})
    extensions = failing(gateway)
    extensions.pop("requestId", None)
    assert extensions == expected


def test_a_read_timeout_is_upstream_unavailable(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    gateway = start_gateway(pcs_read_timeout_seconds=0.3, pcs_max_attempts=1)
    emulator.faults({"clusters": {"demo-active": {"latencySeconds": 2}}})
    assert failing(gateway) == {"code": "UPSTREAM_UNAVAILABLE"}


def test_connection_refused_is_upstream_unavailable(
    start_gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_PCS", f"http://127.0.0.1:{free_port()}")
    gateway = start_gateway(pcs_max_attempts=1, pcs_connect_timeout_seconds=0.5)
    assert failing(gateway) == {"code": "UPSTREAM_UNAVAILABLE"}


def test_credentials_pcs_refuses_are_upstream_credentials(
    start_gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "expired")
    gateway = start_gateway()
    extensions = failing(gateway)
    assert extensions["code"] == "UPSTREAM_CREDENTIALS"
    assert extensions["awsErrorCode"] == "ExpiredTokenException"


def test_missing_credentials_are_upstream_credentials(
    start_gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    gateway = start_gateway()
    assert failing(gateway) == {"code": "UPSTREAM_CREDENTIALS"}


def test_throttling_is_retried_within_the_attempts_and_not_found_never(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    gateway = start_gateway(pcs_max_attempts=3)
    extensions = failing(gateway, "error-throttling")
    assert extensions["code"] == "THROTTLED"
    assert emulator.calls() == 3
    failing(gateway, "error-not-found")
    failing(gateway, "error-access-denied")
    failing(gateway, "error-validation")
    failing(gateway, "error-conflict")
    assert emulator.calls() == 7


def test_a_slow_pcs_fails_the_field_at_the_deadline_and_the_rest_arrives(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    gateway = start_gateway(request_deadline_seconds=0.5)
    gateway.query(QUERY, {"i": "demo-active"})
    emulator.faults({"clusters": {"demo-full": {"latencySeconds": 3}}})
    started = time.monotonic()
    answer = gateway.query(
        '{ fast: cluster(identifier: "demo-active") { name } '
        'slow: cluster(identifier: "demo-full") { name } }'
    )
    elapsed = time.monotonic() - started
    assert elapsed < 0.5 + 0.4
    assert answer["data"] == {"fast": {"name": "demo-active"}, "slow": None}
    (error,) = answer["errors"]
    assert error["path"] == ["slow"]
    assert error["extensions"] == {"code": "UPSTREAM_UNAVAILABLE"}
    assert_clean(answer)


async def test_the_gateway_keeps_pcs_within_its_rate_and_answers_data_or_throttled(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    names = [f"rate-{n:03d}" for n in range(100)]
    for name in names:
        emulator.put_cluster(minimal(name))
    # PCS allows 5 calls a second; the gateway is configured below it, at 4.
    emulator.faults({"rateLimitPerSecond": 5})
    gateway = start_gateway(
        pcs_rate_limit_per_second=4,
        pcs_rate_limit_burst=4,
        pcs_rate_limit_max_wait_seconds=1.0,
        pcs_max_attempts=1,
    )
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        responses = await asyncio.gather(
            *(client.post("/graphql", json={"query": QUERY, "variables": {"i": n}}) for n in names)
        )
    elapsed = time.monotonic() - started
    assert elapsed < 5
    assert {r.status_code for r in responses} == {200}
    data = throttled = 0
    for response in responses:
        answer = response.json()
        assert_clean(answer)
        if answer["data"]["cluster"] is not None:
            data += 1
            continue
        (error,) = answer["errors"]
        assert error["extensions"]["code"] == "THROTTLED"
        assert error["extensions"]["retryAfterSeconds"] >= 1
        assert "awsErrorCode" not in error["extensions"], "PCS itself throttled the gateway"
        throttled += 1
    assert data + throttled == 100
    assert 4 <= data <= 4 + 4 * elapsed + 1
    assert emulator.calls() == data


def test_the_breaker_opens_after_repeated_failures_and_closes_when_pcs_recovers(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    gateway = start_gateway(
        breaker_failure_threshold=3, breaker_open_seconds=0.5, pcs_max_attempts=1
    )
    emulator.faults({"global": {"error": "InternalServerException"}})
    for name in ("demo-active", "demo-creating", "demo-updating"):
        assert failing(gateway, name)["code"] == "UPSTREAM_UNAVAILABLE"
    assert emulator.calls() == 3
    for name in ("demo-deleting", "demo-full", "demo-minimal"):
        assert failing(gateway, name) == {"code": "UPSTREAM_UNAVAILABLE"}
    assert emulator.calls() == 3
    assert gateway.http.get("/readyz").status_code == 200
    emulator.faults(None)
    time.sleep(0.6)
    for name in ("demo-full", "demo-minimal", "demo-deleting"):
        assert gateway.query(QUERY, {"i": name})["data"]["cluster"]["name"] == name
    assert emulator.calls() == 6


def test_request_errors_are_http_400_for_graphql_response_json(gateway: Gateway) -> None:
    strict = {"accept": "application/graphql-response+json"}
    for document, code in (
        ("{ cluster(", "GRAPHQL_PARSE_FAILED"),
        ("{ nope }", "GRAPHQL_VALIDATION_FAILED"),
    ):
        response = gateway.http.post("/graphql", json={"query": document}, headers=strict)
        assert response.status_code == 400
        assert response.headers["content-type"].startswith("application/graphql-response+json")
        body = response.json()
        assert "data" not in body
        assert body["errors"][0]["extensions"]["code"] == code
        legacy = gateway.http.post("/graphql", json={"query": document})
        assert legacy.status_code == 200
        assert legacy.json()["errors"][0]["extensions"]["code"] == code
    partial = gateway.http.post(
        "/graphql",
        json={
            "query": '{ a: cluster(identifier: "demo-active") { name } '
            'b: cluster(identifier: "error-not-found") { name } }'
        },
        headers=strict,
    )
    assert partial.status_code == 200
    assert partial.json()["data"] == {"a": {"name": "demo-active"}, "b": None}
