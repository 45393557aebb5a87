"""Operation limits, HTTP limits, production mode and the per-caller rate limit, over HTTP."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.config import Settings
from gateway.http.answer_cache import AnswerCache
from gateway.security.authentication import Authenticator
from gateway.security.caller_rate_limit import CallerLimit
from gateway.security.gate import SecurityGate
from gateway.security.layers import security_middleware
from tests.support.clock import FakeClock
from tests.support.gateway import Gateway, GatewayFactory, assert_no_leaks
from tests.support.servers import Emulator

ROOT = Path(__file__).resolve().parent.parent
KEY_A = "caller-a-key-0123456789"
KEY_B = "caller-b-key-0123456789"
STATUS = 'query { cluster(identifier: "demo-active") { name status } }'
UPGRADE = {
    "connection": "Upgrade",
    "upgrade": "websocket",
    "sec-websocket-version": "13",
    "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
    "sec-websocket-protocol": "graphql-transport-ws",
}


# What this module pins is the app's behaviour, not the server's: no socket needed.
pytestmark = pytest.mark.gateway("in_process")


def refused(gateway: Gateway, query: str, variables: dict[str, Any] | None = None) -> str:
    """The one error message of an operation refused before execution."""
    response = gateway.http.post("/graphql", json={"query": query, "variables": variables or {}})
    assert response.status_code == 200
    body = response.json()
    assert_no_leaks(body)
    assert body.get("data") is None
    codes = {error["extensions"]["code"] for error in body["errors"]}
    assert codes <= {"GRAPHQL_PARSE_FAILED", "GRAPHQL_VALIDATION_FAILED", "BAD_USER_INPUT"}
    return " | ".join(error["message"] for error in body["errors"])


# --- operation limits -------------------------------------------------------------------


def test_a_depth_bomb_is_refused_before_pcs(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    gateway = start_gateway()
    bomb = "{" + 'cluster(identifier: "demo-active") {' * 40 + "name" + "}" * 41
    assert "exceeds maximum operation depth of 12" in refused(gateway, bomb)
    deep = "{" + "a{" * 2000 + "b" + "}" * 2001
    assert "nested too deeply" in refused(gateway, deep)
    # A real path of the schema over a lower limit.
    shallow = start_gateway(max_depth=3)
    real = (
        '{ cluster(identifier: "demo-full") '
        "{ slurmConfiguration { jwtAuth { jwtKey { secretArn } } } } }"
    )
    assert "exceeds maximum operation depth of 3" in refused(shallow, real)
    assert emulator.calls() == 0


def fragment_chain(length: int, *, width: int = 1) -> str:
    """An operation whose fragments spread the next one `width` times, `length` deep."""
    fragments = [
        f"fragment F{n} on Cluster {{ {' '.join([f'...F{n + 1}'] * width)} }}"
        for n in range(length)
    ]
    fragments.append(f"fragment F{length} on Cluster {{ name }}")
    return '{ cluster(identifier: "demo-active") { ...F0 } } ' + " ".join(fragments)


def test_a_deep_fragment_chain_is_a_validation_error_without_a_traceback(
    start_gateway: GatewayFactory, emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = start_gateway()
    strict = {"accept": "application/graphql-response+json"}
    query = fragment_chain(300)
    with caplog.at_level("INFO"):
        response = gateway.http.post("/graphql", json={"query": query}, headers=strict)
    assert response.status_code == 400
    body = response.json()
    assert_no_leaks(body)
    assert "data" not in body
    error = body["errors"][0]
    assert error["extensions"] == {"code": "GRAPHQL_VALIDATION_FAILED", "limit": 20}
    assert error["message"] == "Fragments spread fragments 301 deep; at most 20 are allowed."
    assert not [r for r in caplog.records if r.exc_info], caplog.text
    assert "Traceback" not in caplog.text and "RecursionError" not in caplog.text
    # Spread twice at each level: shallow, but exponential for the validation rules.
    wide = refused(gateway, fragment_chain(16, width=2))
    assert wide == "The operation spreads fragments more than 1000 times once expanded."
    cycle = (
        '{ cluster(identifier: "demo-active") { ...A } } '
        "fragment A on Cluster { ...B } fragment B on Cluster { ...A }"
    )
    assert "within itself" in refused(gateway, cycle)
    # Within the limits fragments work as before.
    answer = gateway.query(fragment_chain(8, width=2))
    assert answer == {"data": {"cluster": {"name": "demo-active"}}}
    assert emulator.calls() == 1
    deeper = start_gateway(max_fragment_depth=100)
    assert deeper.query(fragment_chain(99))["data"]["cluster"]["name"] == "demo-active"


def test_a_thousand_aliases_are_refused_before_pcs(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    aliases = " ".join(f'a{n}: cluster(identifier: "demo-active") {{ name }}' for n in range(1000))
    query = "{" + aliases + "}"
    # With the defaults the token limit stops it first; with room for the tokens, the aliases.
    assert "more than 4000 tokens" in refused(start_gateway(), query)
    roomy = start_gateway(max_tokens=50_000, max_body_bytes=1_000_000)
    assert refused(roomy, query) == "1000 aliases found. Allowed: 30"
    cheap = "{" + " ".join(f"t{n}: __typename" for n in range(1000)) + "}"
    assert refused(start_gateway(), cheap) == "1000 aliases found. Allowed: 30"
    assert emulator.calls() == 0


def test_a_100_kb_query_is_refused_before_pcs(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    padding = " ".join(["name"] * 20_000)
    query = '{ cluster(identifier: "demo-active") { ' + padding + " } }"
    assert len(query) > 100_000
    # Over the body limit: 413 before anything parses it.
    too_large = start_gateway().http.post("/graphql", json={"query": query})
    assert too_large.status_code == 413
    assert too_large.json()["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"
    # Under a larger body limit, the token limit refuses it.
    roomy = start_gateway(max_body_bytes=1_000_000)
    assert "more than 4000 tokens" in refused(roomy, query)
    assert emulator.calls() == 0


def test_distinct_lookups_over_the_limit_are_refused_before_pcs(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    gateway = start_gateway(max_lookups=3, max_batch_size=10)
    # Literals, variables, defaults, a batch and a fragment all count, duplicates once.
    query = """query Q($one: String!, $ids: [String!]!, $d: String! = "demo-deleting") {
      a: cluster(identifier: "demo-active") { name }
      b: cluster(identifier: $one) { name }
      c: cluster(identifier: $d) { name }
      ...More
    }
    fragment More on Query { clusters(identifiers: $ids) { name } }"""
    message = refused(gateway, query, {"one": "demo-creating", "ids": ["demo-active", "demo-x"]})
    assert message == "The operation asks for 4 distinct clusters; at most 3 are allowed."
    batch = "query($ids: [String!]!) { clusters(identifiers: $ids) { name } }"
    assert refused(gateway, batch, {"ids": [f"c-{n}" for n in range(11)]}) == (
        "A batch may ask for at most 10 clusters."
    )
    assert emulator.calls() == 0
    within = gateway.query(query, {"one": "demo-active", "ids": ["demo-active", "demo-creating"]})
    assert "errors" not in within
    assert emulator.calls() == 3


# --- HTTP limits ------------------------------------------------------------------------


def test_a_20_mb_body_gets_413_and_the_server_stays_healthy(gateway: Gateway) -> None:
    body = b'{"query": "' + b" " * (20 * 1024 * 1024) + b'"}'
    declared = gateway.http.post(
        "/graphql", content=body, headers={"content-type": "application/json"}
    )
    assert declared.status_code == 413
    assert declared.json()["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 1 << 20):
            yield body[start : start + (1 << 20)]

    try:
        streamed = gateway.http.post(
            "/graphql", content=chunks(), headers={"content-type": "application/json"}
        )
        assert streamed.status_code == 413
    except httpx.HTTPError:
        pass  # the server may close the connection while the client still sends
    assert gateway.http.get("/healthz").text == "ok"
    assert gateway.query(STATUS)["data"]["cluster"]["name"] == "demo-active"


def test_only_get_and_post_with_json_reach_graphql(gateway: Gateway, emulator: Emulator) -> None:
    for method in ("PUT", "DELETE", "PATCH"):
        response = gateway.http.request(method, "/graphql", json={"query": STATUS})
        assert response.status_code == 405
        assert response.headers["allow"] == "GET, POST"
        assert response.json()["errors"][0]["extensions"]["code"] == "METHOD_NOT_ALLOWED"
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        response = gateway.http.post(
            "/graphql",
            content=b'{"query": "{ __typename }"}',
            headers={"content-type": content_type},
        )
        assert response.status_code == 415
        assert response.json()["errors"][0]["extensions"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
    charset = gateway.http.post(
        "/graphql",
        content=b'{"query": "{ __typename }"}',
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert charset.json() == {"data": {"__typename": "Query"}}
    assert emulator.calls() == 0


def test_cors_allows_only_the_listed_origins(start_gateway: GatewayFactory) -> None:
    portal = "https://portal.example.test"
    gateway = start_gateway(cors_allow_origins=portal, api_keys=KEY_A)
    preflight = {
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type, x-api-key",
    }
    allowed = gateway.http.options("/graphql", headers={"origin": portal, **preflight})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == portal
    assert "x-api-key" in allowed.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in allowed.headers
    other = gateway.http.options("/graphql", headers={"origin": "https://evil.test", **preflight})
    assert other.status_code == 400
    assert "access-control-allow-origin" not in other.headers
    # Simple requests: only the listed origin may read the answer, a 401 included.
    mine = gateway.http.post("/graphql", json={"query": STATUS}, headers={"origin": portal})
    assert mine.status_code == 401
    assert mine.headers["access-control-allow-origin"] == portal
    theirs = gateway.http.post(
        "/graphql",
        json={"query": STATUS},
        headers={"origin": "https://evil.test", "x-api-key": KEY_A},
    )
    assert "access-control-allow-origin" not in theirs.headers


@pytest.mark.gateway("uvicorn")  # a websocket handshake needs a real server
def test_a_websocket_from_another_origin_is_refused(start_gateway: GatewayFactory) -> None:
    portal = "https://portal.example.test"
    gateway = start_gateway(cors_allow_origins=portal, websockets=True)
    host = gateway.url.removeprefix("http://")
    assert (
        gateway.http.get("/graphql", headers={**UPGRADE, "origin": "https://evil.test"}).status_code
        == 403
    )
    assert gateway.http.get("/graphql", headers={**UPGRADE, "origin": portal}).status_code == 101
    assert (
        gateway.http.get("/graphql", headers={**UPGRADE, "origin": f"http://{host}"}).status_code
        == 101
    )
    assert gateway.http.get("/graphql", headers=UPGRADE).status_code == 101


# --- production mode --------------------------------------------------------------------


def test_production_refuses_introspection_and_graphiql(start_gateway: GatewayFactory) -> None:
    gateway = start_gateway(environment="production", api_keys=KEY_A)
    key = {"x-api-key": KEY_A}
    page = gateway.http.get("/graphql", headers={"accept": "text/html"})
    assert page.status_code == 404
    introspection = gateway.http.post(
        "/graphql", json={"query": "{ __schema { types { name } } }"}, headers=key
    ).json()
    assert introspection.get("data") is None
    assert introspection["errors"]
    for error in introspection["errors"]:
        assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
        assert "introspection" in error["message"].lower()
    typed = gateway.http.post(
        "/graphql", json={"query": '{ __type(name: "Cluster") { name } }'}, headers=key
    ).json()
    assert typed.get("data") is None
    answer = gateway.query(STATUS, headers=key)
    assert answer["data"]["cluster"]["status"] == "ACTIVE"
    # Explicitly enabled, both come back.
    opened = start_gateway(
        environment="production", api_keys=KEY_A, graphiql=True, introspection=True
    )
    assert opened.http.get("/graphql", headers={"accept": "text/html"}).status_code == 200
    schema = opened.query("{ __schema { queryType { name } } }", headers=key)
    assert schema["data"] == {"__schema": {"queryType": {"name": "Query"}}}


def test_introspection_stays_on_in_development(gateway: Gateway) -> None:
    assert gateway.query("{ __schema { queryType { name } } }")["data"] == {
        "__schema": {"queryType": {"name": "Query"}}
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    ("env", "code", "line"),
    [
        (
            {"PCS_GATEWAY_ENVIRONMENT": "production"},
            2,
            "pcs-gateway: PCS_GATEWAY_ENVIRONMENT: production needs authentication: set "
            "PCS_GATEWAY_API_KEYS, PCS_GATEWAY_API_KEYS_FILE or PCS_GATEWAY_OIDC_ISSUER "
            "(or PCS_GATEWAY_ALLOW_UNAUTHENTICATED=true to serve anyone)",
        ),
        (
            {"PCS_GATEWAY_ENVIRONMENT": "production", "PCS_GATEWAY_API_KEYS": "tiny"},
            2,
            "pcs-gateway: PCS_GATEWAY_API_KEYS: Value error, entry 1: a key needs 16 or more "
            "characters, no spaces",
        ),
    ],
)
def test_production_without_authentication_does_not_start(
    env: dict[str, str], code: int, line: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--demo", "--port", "0"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == code
    assert result.stderr.strip().splitlines() == [line]


# --- per-caller rate limit --------------------------------------------------------------


def op(n: int) -> str:
    return f'query Q{n} {{ cluster(identifier: "demo-active") {{ name }} }}'


def send(gateway: Gateway, query: str, **headers: str) -> httpx.Response:
    return gateway.http.post("/graphql", json={"query": query}, headers=headers)


def assert_throttled(response: httpx.Response) -> None:
    assert response.status_code == 429
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= 60
    (error,) = response.json()["errors"]
    assert error["extensions"] == {"code": "THROTTLED", "retryAfterSeconds": retry_after}


def test_a_caller_over_its_budget_gets_429_and_others_do_not(
    start_gateway: GatewayFactory,
) -> None:
    gateway = start_gateway(rate_limit="3/minute", api_keys=f"{KEY_A},{KEY_B}")
    for n in range(3):
        assert send(gateway, op(n), **{"x-api-key": KEY_A}).status_code == 200
    assert_throttled(send(gateway, op(3), **{"x-api-key": KEY_A}))
    # Every request counts, answered from the cache or not: a held answer is refused too.
    assert_throttled(send(gateway, op(0), **{"x-api-key": KEY_A}))
    assert gateway.app.stats.hits == 0
    # Another caller has its own budget.
    assert send(gateway, op(3), **{"x-api-key": KEY_B}).status_code == 200
    # Public routes are never limited.
    assert gateway.http.get("/healthz").status_code == 200


def gated(settings: Settings, limit: CallerLimit) -> httpx.AsyncClient:
    """A client of the gate and the layers behind it as the gateway joins them."""
    authenticator = Authenticator(settings)

    async def answer(request: Request) -> Response:
        return Response(b'{"data":{}}', media_type="application/json")

    inner = Starlette(
        routes=[Route("/graphql", answer, methods=["POST"])],
        middleware=security_middleware(settings, authenticator, limit),
    )
    app = AnswerCache(inner, gate=SecurityGate(authenticator, limit))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway")


async def test_a_callers_budget_comes_back_as_its_oldest_requests_leave_the_window() -> None:
    clock = FakeClock()
    settings = Settings(rate_limit="2/minute;3/hour", api_keys=f"{KEY_A},{KEY_B}")
    limit = CallerLimit(settings, clock=clock)
    async with gated(settings, limit) as http:

        async def status(key: str) -> httpx.Response:
            return await http.post("/graphql", json={"query": STATUS}, headers={"x-api-key": key})

        assert (await status(KEY_A)).status_code == 200
        clock.advance(40)
        assert (await status(KEY_A)).status_code == 200
        refused = await status(KEY_A)
        assert_throttled(refused)
        assert refused.headers["retry-after"] == "20"  # when the first leaves the minute
        clock.advance(20)
        assert (await status(KEY_A)).status_code == 200  # the first has left the minute
        # The hour's budget (3) is spent too; refusals by the minute did not count in it.
        clock.advance(60)
        by_the_hour = await status(KEY_A)
        assert by_the_hour.status_code == 429
        assert by_the_hour.headers["retry-after"] == str(3600 - 120)  # the first's hour
        assert (await status(KEY_B)).status_code == 200
        # Once the first hour has passed, the budget is back; idle callers are forgotten.
        clock.advance(3600)
        assert (await status(KEY_A)).status_code == 200
        assert limit.windows is not None and len(limit.windows) == 2  # KEY_A in both limits


async def test_a_limit_of_zero_refuses_every_request_for_a_whole_window() -> None:
    settings = Settings(rate_limit="0/minute", api_keys=KEY_A)
    async with gated(settings, CallerLimit(settings, clock=FakeClock())) as http:
        for _ in range(2):
            refused = await http.post(
                "/graphql", json={"query": STATUS}, headers={"x-api-key": KEY_A}
            )
            assert_throttled(refused)
            assert refused.headers["retry-after"] == "60"


def test_client_addresses_come_from_trusted_proxies_only(start_gateway: GatewayFactory) -> None:
    behind = start_gateway(rate_limit="2/minute", trusted_proxies=1)
    for n in range(2):
        assert send(behind, op(n), **{"x-forwarded-for": "203.0.113.7"}).status_code == 200
    assert_throttled(send(behind, op(2), **{"x-forwarded-for": "203.0.113.7"}))
    # A client-made entry left of the proxy's does not buy a fresh budget.
    assert_throttled(send(behind, op(3), **{"x-forwarded-for": "10.9.9.9, 203.0.113.7"}))
    assert send(behind, op(4), **{"x-forwarded-for": "203.0.113.8"}).status_code == 200
    # With no trusted proxy, the header is ignored: every request is the peer's.
    direct = start_gateway(rate_limit="2/minute")
    for n in range(2):
        assert send(direct, op(n), **{"x-forwarded-for": f"198.51.100.{n}"}).status_code == 200
    assert_throttled(send(direct, op(2), **{"x-forwarded-for": "198.51.100.99"}))


@pytest.mark.redis
def test_replicas_share_one_budget_in_redis(start_gateway: GatewayFactory, redis_url: str) -> None:
    settings = {"rate_limit": "3/minute", "api_keys": KEY_A, "cache_url": redis_url}
    first, second = start_gateway(**settings), start_gateway(**settings)
    assert send(first, op(0), **{"x-api-key": KEY_A}).status_code == 200
    assert send(first, op(1), **{"x-api-key": KEY_A}).status_code == 200
    assert send(second, op(2), **{"x-api-key": KEY_A}).status_code == 200
    assert_throttled(send(second, op(3), **{"x-api-key": KEY_A}))
    assert_throttled(send(first, op(4), **{"x-api-key": KEY_A}))


@pytest.mark.gateway("uvicorn")  # concurrent clients over a real socket
@pytest.mark.slow
def test_a_burst_beyond_the_redis_pool_still_keeps_the_budget(
    start_gateway: GatewayFactory, redis_url: str
) -> None:
    # More requests at once than the pool has connections: they wait for one, and the
    # budget still holds (a storage failure would let every request pass).
    gateway = start_gateway(
        rate_limit="150/minute",
        api_keys=KEY_A,
        cache_url=redis_url,
        cache_max_connections=10,
        cache_timeout_seconds=2,
        answer_cache_max_entries=0,
    )

    async def burst() -> list[int]:
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(base_url=gateway.url, limits=limits, timeout=60) as client:
            answers = await asyncio.gather(
                *(
                    client.post("/graphql", json={"query": STATUS}, headers={"x-api-key": KEY_A})
                    for _ in range(200)
                )
            )
        return [answer.status_code for answer in answers]

    statuses = asyncio.run(burst())
    assert statuses.count(200) == 150
    assert statuses.count(429) == 50
