"""Upstream protection end to end: deadline, rate limit, circuit breaker, HTTP semantics."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from gateway.emulator.seed import minimal
from tests.support.gateway import Gateway, GatewayFactory, assert_no_leaks
from tests.support.servers import Emulator

QUERY = "query($i: String!) { cluster(identifier: $i) { name } }"


# What this module pins is the app's behaviour, not the server's: no socket needed.
pytestmark = pytest.mark.gateway("in_process")


def failing(gateway: Gateway, identifier: str = "demo-active") -> dict[str, Any]:
    answer = gateway.query(QUERY, {"i": identifier})
    assert answer["data"] == {"cluster": None}
    (error,) = answer["errors"]
    assert error["path"] == ["cluster"]
    extensions: dict[str, Any] = error["extensions"]
    return extensions


def arrivals(emulator: Emulator) -> list[float]:
    """When each GetCluster call reached the emulator (Unix time)."""
    log = emulator.http.get("/_emulator/calls").json()["log"]
    return sorted(entry["at"] for entry in log if entry["operation"] == "GetCluster")


def most_in_any_window(times: list[float], window: float = 1.0) -> int:
    """The most calls that arrived within any `window` seconds."""
    most = first = 0
    for last, at in enumerate(times):
        while times[first] < at - window:
            first += 1
        most = max(most, last - first + 1)
    return most


@pytest.mark.slow
def test_a_slow_pcs_fails_the_field_at_the_deadline_and_the_rest_arrives(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    gateway = start_gateway(request_deadline_seconds=0.5)
    gateway.query(QUERY, {"i": "demo-active"})
    emulator.faults({"clusters": {"demo-full": {"latencySeconds": 1.5}}})
    answer = gateway.query(
        '{ fast: cluster(identifier: "demo-active") { name } '
        'slow: cluster(identifier: "demo-full") { name } }'
    )
    assert emulator.in_flight() == ["demo-full"], "the answer did not wait for the slow call"
    assert answer["data"] == {"fast": {"name": "demo-active"}, "slow": None}
    (error,) = answer["errors"]
    assert error["path"] == ["slow"]
    assert error["extensions"] == {"code": "UPSTREAM_UNAVAILABLE"}
    assert error["message"] == "PCS did not answer within the request's deadline; retry later."
    # The call went on without the request that gave up, and filled the cache.
    while emulator.in_flight():
        time.sleep(0.05)
    assert gateway.query(QUERY, {"i": "demo-full"})["data"] == {"cluster": {"name": "demo-full"}}
    assert emulator.identifiers().count("demo-full") == 1


def test_the_deadline_covers_the_sdk_retries(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    # Three attempts of 0.4 s each, with backoff between them, take well over the deadline.
    gateway = start_gateway(request_deadline_seconds=0.6, pcs_max_attempts=3)
    emulator.faults({"global": {"latencySeconds": 0.4, "error": "InternalServerException"}})
    assert failing(gateway) == {"code": "UPSTREAM_UNAVAILABLE"}
    assert emulator.answered() < 3, "the answer did not wait for every attempt"


def test_a_retry_after_a_read_timeout_answers_within_the_deadline(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    gateway = start_gateway(
        request_deadline_seconds=3, pcs_read_timeout_seconds=0.3, pcs_max_attempts=3
    )
    emulator.faults({"clusters": {"demo-active": {"latencySeconds": 2, "times": 1}}})
    answer = gateway.query(QUERY, {"i": "demo-active"})
    # Data, not the deadline's error: the retry answered within the deadline.
    assert answer == {"data": {"cluster": {"name": "demo-active"}}}
    assert emulator.calls() == 2


def test_a_slow_cluster_in_a_batch_fails_only_its_own_index(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    gateway = start_gateway(request_deadline_seconds=0.5)
    emulator.faults({"clusters": {"demo-full": {"latencySeconds": 2}}})
    answer = gateway.query(
        '{ clusters(identifiers: ["demo-active", "demo-full", "demo-minimal"]) { name } }'
    )
    assert emulator.in_flight() == ["demo-full"], "the answer did not wait for the slow call"
    assert answer["data"] == {"clusters": [{"name": "demo-active"}, None, {"name": "demo-minimal"}]}
    (error,) = answer["errors"]
    assert error["path"] == ["clusters", 1]
    assert error["extensions"] == {"code": "UPSTREAM_UNAVAILABLE"}


@pytest.mark.gateway("uvicorn")  # concurrent clients over a real socket
@pytest.mark.slow
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
    )
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        responses = await asyncio.gather(
            *(client.post("/graphql", json={"query": QUERY, "variables": {"i": n}}) for n in names)
        )
    elapsed = time.monotonic() - started
    assert {r.status_code for r in responses} == {200}
    data = throttled = 0
    for response in responses:
        answer = response.json()
        assert_no_leaks(answer)
        if answer["data"]["cluster"] is not None:
            data += 1
            continue
        (error,) = answer["errors"]
        # No awsErrorCode: the gateway held the call back, PCS never throttled it.
        assert set(error["extensions"]) == {"code", "retryAfterSeconds"}
        assert error["extensions"]["code"] == "THROTTLED"
        assert error["extensions"]["retryAfterSeconds"] >= 1
        throttled += 1
    assert data + throttled == 100
    assert 4 <= data <= 4 + 4 * elapsed + 1
    # No request queued: each took a token within the wait allowed, or was refused at once.
    limiter = gateway.app.state.gateway.client.limiter
    assert limiter.rejections == throttled
    assert limiter.waits <= data
    assert emulator.calls() == data
    # The bucket's bound (burst + rate) in every one-second window, one more for jitter.
    assert most_in_any_window(arrivals(emulator)) <= 4 + 4 + 1


@pytest.mark.gateway("uvicorn")  # concurrent clients over a real socket
@pytest.mark.slow
async def test_sdk_retries_take_tokens_from_the_rate_limit_too(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    # PCS throttles every call, so the SDK retries each one: without a token per attempt
    # the gateway would send three calls for every one it started.
    emulator.faults({"global": {"error": "ThrottlingException"}})
    gateway = start_gateway(
        pcs_rate_limit_per_second=4,
        pcs_rate_limit_burst=4,
        pcs_rate_limit_max_wait_seconds=0.5,
        pcs_max_attempts=3,
    )
    names = [f"demo-{status}" for status in ("active", "creating", "updating", "deleting")]
    names += ["demo-full", "demo-minimal", "demo-suspended", "demo-resuming"]
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        responses = await asyncio.gather(
            *(client.post("/graphql", json={"query": QUERY, "variables": {"i": n}}) for n in names)
        )
    elapsed = time.monotonic() - started
    for response in responses:
        (error,) = response.json()["errors"]
        assert error["extensions"]["code"] == "THROTTLED"
        assert error["extensions"]["retryAfterSeconds"] >= 1
    times = arrivals(emulator)
    assert len(times) <= 4 + 4 * elapsed + 1
    assert most_in_any_window(times) <= 4 + 4 + 1


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
    # Refused by the breaker itself, before any wait for a token or an attempt.
    assert gateway.app.state.gateway.client.breaker.refused == 3
    assert emulator.calls() == 3, "no call reaches PCS while the breaker is open"
    assert gateway.http.get("/readyz").json()["checks"]["pcsBreaker"] == "open"
    assert gateway.http.get("/readyz").status_code == 200
    emulator.faults(None)
    time.sleep(0.6)
    for name in ("demo-full", "demo-minimal", "demo-deleting"):
        assert gateway.query(QUERY, {"i": name})["data"]["cluster"]["name"] == name
    assert emulator.calls() == 6
    assert gateway.http.get("/readyz").json()["checks"]["pcsBreaker"] == "closed"


def test_a_failed_probe_opens_the_breaker_again(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    gateway = start_gateway(
        breaker_failure_threshold=2, breaker_open_seconds=0.4, pcs_max_attempts=1
    )
    emulator.faults({"global": {"error": "InternalServerException"}})
    failing(gateway, "demo-active")
    failing(gateway, "demo-creating")
    time.sleep(0.5)
    failing(gateway, "demo-updating")  # the probe: it reaches PCS and fails
    assert emulator.calls() == 3
    failing(gateway, "demo-deleting")
    assert emulator.calls() == 3, "one failed probe opens the breaker again"
    assert gateway.app.state.gateway.client.breaker.opened == 2


def test_an_open_breaker_answers_from_the_stale_copy_without_calling_pcs(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    gateway = start_gateway(
        breaker_failure_threshold=2,
        breaker_open_seconds=5,
        pcs_max_attempts=1,
        cache_ttl_settled_seconds=0.2,
    )
    query = '{ cluster(identifier: "demo-active") { name freshness { stale } } }'
    assert gateway.query(query)["data"]["cluster"]["freshness"] == {"stale": False}
    emulator.faults({"global": {"error": "InternalServerException"}})
    failing(gateway, "demo-creating")
    failing(gateway, "demo-updating")
    time.sleep(0.3)
    calls = emulator.calls()
    answer = gateway.query(query)
    assert answer["data"]["cluster"] == {"name": "demo-active", "freshness": {"stale": True}}
    assert answer["extensions"]["stale"][0]["path"] == ["cluster"]
    assert emulator.calls() == calls


def test_answers_from_pcs_such_as_not_found_keep_the_breaker_closed(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    gateway = start_gateway(breaker_failure_threshold=2, pcs_max_attempts=1)
    for identifier in ("error-not-found", "error-validation", "error-conflict", "nothing-here"):
        failing(gateway, identifier)
    assert gateway.query(QUERY, {"i": "demo-active"})["data"]["cluster"] is not None
    assert emulator.calls() == 5
    assert gateway.app.state.gateway.client.breaker.opened == 0


def test_request_errors_are_http_400_for_graphql_response_json(gateway: Gateway) -> None:
    strict = {"accept": "application/graphql-response+json"}
    for document, variables, code in (
        ("{ cluster(", {}, "GRAPHQL_PARSE_FAILED"),
        ("{ nope }", {}, "GRAPHQL_VALIDATION_FAILED"),
        (QUERY, {}, "GRAPHQL_VALIDATION_FAILED"),
        (QUERY, {"i": 7}, "GRAPHQL_VALIDATION_FAILED"),
    ):
        payload = {"query": document, "variables": variables}
        response = gateway.http.post("/graphql", json=payload, headers=strict)
        assert response.status_code == 400, document
        assert response.headers["content-type"].startswith("application/graphql-response+json")
        body = response.json()
        assert_no_leaks(body)
        assert "data" not in body
        assert body["errors"][0]["extensions"]["code"] == code
        legacy = gateway.http.post("/graphql", json=payload)
        assert legacy.status_code == 200
        assert legacy.json()["errors"][0]["extensions"]["code"] == code


def test_a_failing_field_is_a_partial_result_with_http_200(gateway: Gateway) -> None:
    strict = {"accept": "application/graphql-response+json"}
    partial = gateway.http.post(
        "/graphql",
        json={
            "query": '{ a: cluster(identifier: "demo-active") { name } '
            'b: cluster(identifier: "error-not-found") { name } }'
        },
        headers=strict,
    )
    assert partial.status_code == 200
    assert partial.headers["content-type"].startswith("application/graphql-response+json")
    body = partial.json()
    assert body["data"] == {"a": {"name": "demo-active"}, "b": None}
    assert [e["path"] for e in body["errors"]] == [["b"]]


@pytest.mark.parametrize(
    # error-internal is retried with backoff: seconds.
    "identifier",
    ["demo-active", pytest.param("error-internal", marks=pytest.mark.slow)],
)
def test_get_requests_follow_the_same_status_rules(gateway: Gateway, identifier: str) -> None:
    strict = {"accept": "application/graphql-response+json"}
    bad = gateway.http.get("/graphql", params={"query": "{ cluster("}, headers=strict)
    assert bad.status_code == 400
    good = gateway.http.get(
        "/graphql",
        params={"query": f'{{ cluster(identifier: "{identifier}") {{ name }} }}'},
        headers=strict,
    )
    assert good.status_code == 200
    assert "cluster" in good.json()["data"]


@pytest.mark.parametrize(
    "request_kwargs",
    [
        {"content": b"{not json", "headers": {"content-type": "application/json"}},
        {"json": {"variables": {}}},
        {"json": {"query": 5}},
        {"json": {"query": '{ cluster(identifier: "x") { name } }', "operationName": "N"}},
    ],
    ids=["body-not-json", "no-query", "query-not-a-string", "unknown-name"],
)
def test_requests_refused_before_graphql_runs_get_a_graphql_error_document(
    gateway: Gateway, emulator: Emulator, request_kwargs: dict[str, Any]
) -> None:
    response = gateway.http.post("/graphql", **request_kwargs)
    assert response.status_code == 400
    body = response.json()
    assert_no_leaks(body)
    (error,) = body["errors"]
    assert error["extensions"] == {"code": "BAD_REQUEST"}
    assert error["message"]
    assert emulator.calls() == 0


def test_mutations_over_get_are_refused_as_a_request_error(gateway: Gateway) -> None:
    response = gateway.http.get("/graphql", params={"query": "mutation { x }"})
    assert response.status_code == 400
    assert response.json() == {
        "errors": [
            {
                "message": "mutations are not allowed when using GET",
                "extensions": {"code": "BAD_REQUEST"},
            }
        ]
    }


def test_an_unknown_4xx_keeps_the_breaker_closed_and_an_unknown_5xx_opens_it(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    gateway = start_gateway(breaker_failure_threshold=2, pcs_max_attempts=1)
    breaker = gateway.app.state.gateway.client.breaker
    emulator.faults({"global": {"error": "ShinyNewException"}})
    for name in ("demo-active", "demo-creating", "demo-updating"):
        failing(gateway, name)
    assert breaker.opened == 0
    emulator.faults({"global": {"error": "ShinyNewException", "httpStatus": 502}})
    for name in ("demo-deleting", "demo-full"):
        failing(gateway, name)
    assert breaker.opened == 1
