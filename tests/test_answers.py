"""The answer cache: repeated operations answered with their bytes, and never wrongly."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from starlette.types import Receive, Scope, Send

from gateway.context import AnswerFacts, RequestContext
from gateway.emulator.seed import minimal
from gateway.http.answer_cache import AnswerCache, AnswerStats
from tests.support.gateway import Gateway, GatewayFactory
from tests.support.servers import Emulator

ROOT = Path(__file__).resolve().parent.parent
FULL = (ROOT / "schema" / "examples" / "cluster-full.graphql").read_text()
STATUS = "query($i: String!) { cluster(identifier: $i) { name status } }"


# What this module pins is the app's behaviour, not the server's: no socket needed.
pytestmark = pytest.mark.gateway("in_process")


def post(gateway: Gateway, query: str, variables: dict[str, Any], **kwargs: Any) -> httpx.Response:
    return gateway.http.post("/graphql", json={"query": query, "variables": variables}, **kwargs)


def answers(gateway: Gateway) -> AnswerCache:
    cache: AnswerCache = gateway.app
    return cache


def settled(cache: AnswerCache) -> AnswerStats:
    """The cache's counters once the server has stored the last answer it sent.

    An answer is stored just after its last byte goes out, so the test may read the
    counters a moment before the server thread has counted it.
    """
    deadline = time.monotonic() + 5
    stats = cache.stats
    while stats.stores + stats.refused < stats.misses and time.monotonic() < deadline:
        time.sleep(0.01)
    return stats


def without(headers: httpx.Headers, *names: str) -> list[tuple[str, str]]:
    return [(k, v) for k, v in headers.multi_items() if k not in names]


def test_a_repeat_is_answered_with_the_same_bytes_and_no_pcs_call(
    gateway: Gateway, emulator: Emulator
) -> None:
    first = post(gateway, STATUS, {"i": "demo-active"})
    calls = emulator.calls()
    stats_before = (gateway.stats.hits, gateway.stats.misses)
    second = post(gateway, STATUS, {"i": "demo-active"})
    assert second.content == first.content
    assert first.json() == {"data": {"cluster": {"name": "demo-active", "status": "ACTIVE"}}}
    # Each answer has its own request id; every other header is replayed.
    assert without(second.headers, "date", "x-request-id") == without(
        first.headers, "date", "x-request-id"
    )
    assert len({first.headers["x-request-id"], second.headers["x-request-id"]}) == 2
    assert emulator.calls() == calls
    # The cluster service was not even asked: the answer came from in front of it.
    assert (gateway.stats.hits, gateway.stats.misses) == stats_before
    assert (answers(gateway).stats.hits, answers(gateway).stats.misses) == (1, 1)


def test_a_repeated_get_is_answered_from_the_cache(gateway: Gateway) -> None:
    params = {"query": STATUS, "variables": '{"i": "demo-full"}'}
    first = gateway.http.get("/graphql", params=params)
    second = gateway.http.get("/graphql", params=params)
    assert second.content == first.content
    assert first.json()["data"]["cluster"]["name"] == "demo-full"
    assert answers(gateway).stats.hits == 1


def test_a_reused_full_answer_states_the_age_at_the_time_it_is_sent(gateway: Gateway) -> None:
    first = post(gateway, FULL, {"identifier": "demo-full"}).json()
    time.sleep(0.25)
    second_response = post(gateway, FULL, {"identifier": "demo-full"})
    second = second_response.json()
    assert answers(gateway).stats.hits == 1
    age = second["data"]["cluster"]["freshness"]["ageSeconds"]
    assert age >= first["data"]["cluster"]["freshness"]["ageSeconds"] + 0.2
    assert int(second_response.headers["content-length"]) == len(second_response.content)
    # Everything but the age is the first answer.
    second["data"]["cluster"]["freshness"]["ageSeconds"] = first["data"]["cluster"]["freshness"][
        "ageSeconds"
    ]
    assert second == first


def test_an_aliased_age_is_restated_too(gateway: Gateway) -> None:
    query = """query($i: String!) {
      a: cluster(identifier: $i) { f: freshness { age: ageSeconds } }
      b: cluster(identifier: $i) { freshness { ageSeconds } }
    }"""
    post(gateway, query, {"i": "demo-active"})
    time.sleep(0.2)
    data = post(gateway, query, {"i": "demo-active"}).json()["data"]
    assert answers(gateway).stats.hits == 1
    assert data["a"]["f"]["age"] >= 0.2
    assert data["a"]["f"]["age"] == data["b"]["freshness"]["ageSeconds"]


def test_an_answer_expires_with_the_cluster_ttl(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    gateway = start_gateway(cache_ttl_settled_seconds=0.4)
    assert post(gateway, STATUS, {"i": "demo-active"}).json()["data"]["cluster"]["status"] == (
        "ACTIVE"
    )
    emulator.put_cluster(minimal("demo-active", status="UPDATING"))
    assert post(gateway, STATUS, {"i": "demo-active"}).json()["data"]["cluster"]["status"] == (
        "ACTIVE"
    )
    time.sleep(0.5)
    calls = emulator.calls()
    assert post(gateway, STATUS, {"i": "demo-active"}).json()["data"]["cluster"]["status"] == (
        "UPDATING"
    )
    assert emulator.calls() == calls + 1


def test_a_refresh_bypasses_the_cache_and_later_answers_are_rebuilt(
    gateway: Gateway, emulator: Emulator
) -> None:
    post(gateway, STATUS, {"i": "demo-active"})
    post(gateway, STATUS, {"i": "demo-active"})
    assert answers(gateway).stats.hits == 1
    emulator.put_cluster(minimal("demo-active", status="UPDATING"))
    refreshed = gateway.query('{ cluster(identifier: "demo-active", refresh: true) { status } }')
    assert refreshed == {"data": {"cluster": {"status": "UPDATING"}}}
    again = gateway.query('{ cluster(identifier: "demo-active", refresh: true) { status } }')
    assert again == refreshed
    # The earlier answer was built from the value the refresh replaced: not served again.
    after = post(gateway, STATUS, {"i": "demo-active"}).json()
    assert after["data"]["cluster"]["status"] == "UPDATING"
    assert answers(gateway).stats.hits == 1


def at_once(gateway: Gateway, query: str, variables: dict[str, Any], count: int) -> list[bytes]:
    """The bodies of `count` identical requests sent together."""
    with ThreadPoolExecutor(count) as pool:
        sent = [pool.submit(post, gateway, query, variables) for _ in range(count)]
        return [future.result().content for future in sent]


def test_requests_wait_for_an_outdated_answer_being_rebuilt(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    gateway = start_gateway(cache_ttl_settled_seconds=0.3)
    post(gateway, STATUS, {"i": "demo-active"})
    time.sleep(0.4)  # past the answer's freshness
    # Slow enough that every request arrives while the first one rebuilds the answer.
    emulator.faults({"global": {"latencySeconds": 0.5}})
    bodies = at_once(gateway, STATUS, {"i": "demo-active"}, 6)
    assert len(set(bodies)) == 1
    assert orjson.loads(bodies[0])["data"]["cluster"]["name"] == "demo-active"
    stats = settled(answers(gateway))
    assert (stats.misses, stats.waits, stats.hits, stats.stores) == (2, 5, 5, 2)
    assert emulator.calls() == 2


def test_waiting_requests_build_their_own_when_the_rebuilt_answer_is_not_kept(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    gateway = start_gateway(cache_ttl_settled_seconds=0.3, pcs_max_attempts=1)
    post(gateway, STATUS, {"i": "demo-active"})
    time.sleep(0.4)
    slow_throttle = {"error": "ThrottlingException", "latencySeconds": 0.5}
    emulator.faults({"clusters": {"demo-active": slow_throttle}})
    bodies = [orjson.loads(body) for body in at_once(gateway, STATUS, {"i": "demo-active"}, 4)]
    # The rebuilt answer is stale, never kept: the three that waited built their own.
    assert all(body["extensions"]["stale"][0]["path"] == ["cluster"] for body in bodies)
    assert {body["data"]["cluster"]["name"] for body in bodies} == {"demo-active"}
    stats = answers(gateway).stats
    assert (stats.misses, stats.waits, stats.hits, stats.stores) == (5, 3, 0, 1)


@pytest.mark.slow
def test_errors_are_never_stored(gateway: Gateway, emulator: Emulator) -> None:
    for _ in range(3):
        answer = post(gateway, STATUS, {"i": "error-not-found"}).json()
        assert answer["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    batch = '{ clusters(identifiers: ["demo-active", "error-internal"]) { name } }'
    for _ in range(2):
        partial = gateway.query(batch)
        assert partial["data"]["clusters"][0] == {"name": "demo-active"}
        assert partial["errors"][0]["path"] == ["clusters", 1]
    for _ in range(2):
        refused = gateway.http.post("/graphql", json={"query": "{ cluster { name } }"})
        assert refused.json()["errors"]
    assert answers(gateway).stats.hits == 0
    assert answers(gateway).stats.stores == 0


def test_a_mutation_is_never_answered_from_the_cache(gateway: Gateway) -> None:
    for _ in range(2):
        answer = gateway.query('mutation { cluster(identifier: "demo-active") { name } }')
        assert answer["errors"]
    assert answers(gateway).stats.stores == 0


def test_a_stale_answer_is_not_stored_and_stays_marked_stale(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    gateway = start_gateway(
        cache_ttl_settled_seconds=0.3, cache_max_stale_seconds=60, pcs_max_attempts=1
    )
    assert post(gateway, FULL, {"identifier": "demo-active"}).json()["data"]["cluster"]
    time.sleep(0.4)
    emulator.faults({"clusters": {"demo-active": {"error": "InternalServerException"}}})
    for _ in range(2):
        answer = post(gateway, FULL, {"identifier": "demo-active"}).json()
        assert answer["data"]["cluster"]["freshness"]["stale"] is True
        assert answer["extensions"]["stale"][0]["path"] == ["cluster"]
    assert answers(gateway).stats.hits == 0
    assert answers(gateway).stats.stores == 1


def test_credentials_are_not_in_the_key_without_authentication(
    gateway: Gateway, emulator: Emulator
) -> None:
    # Authentication off: every caller is the same anonymous one, whatever it sends.
    post(gateway, STATUS, {"i": "demo-active"}, headers={"x-api-key": "first-key"})
    post(gateway, STATUS, {"i": "demo-active"}, headers={"x-api-key": "second-key"})
    post(gateway, STATUS, {"i": "demo-active"}, headers={"authorization": "Bearer first-key"})
    post(gateway, STATUS, {"i": "demo-active"})
    assert (answers(gateway).stats.hits, answers(gateway).stats.misses) == (3, 1)
    assert emulator.calls() == 1


def test_a_clients_own_request_id_does_not_split_the_cache(gateway: Gateway) -> None:
    for n in range(3):
        response = post(
            gateway, STATUS, {"i": "demo-active"}, headers={"x-request-id": f"client-{n}"}
        )
        assert response.headers["x-request-id"] == f"client-{n}"
    assert answers(gateway).stats.hits == 2


def test_a_body_over_the_limit_is_still_refused(start_gateway: GatewayFactory) -> None:
    gateway = start_gateway(max_body_bytes=2048)
    query = STATUS + " " * 4096
    for _ in range(2):
        response = post(gateway, query, {"i": "demo-active"})
        assert response.status_code == 413
        assert response.json()["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"
    assert answers(gateway).stats.hits == 0


def test_the_entry_bound_holds(start_gateway: GatewayFactory) -> None:
    gateway = start_gateway(answer_cache_max_entries=16)
    operation = "query Q%d($i: String!) { cluster(identifier: $i) { name } }"
    for n in range(40):
        post(gateway, operation % n, {"i": "demo-active"})
    cache = answers(gateway)
    assert settled(cache).evictions == 40 - 16
    assert len(cache) == 16
    # The newest are kept, the oldest went.
    post(gateway, operation % 39, {"i": "demo-active"})
    post(gateway, operation % 0, {"i": "demo-active"})
    assert (cache.stats.hits, cache.stats.misses) == (1, 41)


def test_the_metrics_count_answers_from_the_cache(gateway: Gateway) -> None:
    for _ in range(3):
        post(gateway, STATUS, {"i": "demo-active"})
    metrics = gateway.http.get("/metrics").text
    assert "pcsgw_answer_cache_hits_total 2.0" in metrics
    assert "pcsgw_answer_cache_misses_total 1.0" in metrics
    assert "pcsgw_answer_cache_entries 1.0" in metrics


async def test_the_byte_bound_holds() -> None:
    """Large answers: the cache never holds more than its byte bound."""
    body = orjson.dumps({"data": {"blob": "x" * 60_000}})

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        RequestContext.of(scope).facts = AnswerFacts(True, time.time() + 60, {"c": 1.0})
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    cache = AnswerCache(inner, max_bytes=1024 * 1024)  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=cache)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        for n in range(40):
            response = await client.post("/graphql", content=b'{"n": %d}' % n)
            assert response.content == body
    assert cache.held_bytes <= 1024 * 1024
    assert 0 < len(cache) <= 17
    assert cache.stats.evictions == 40 - len(cache)
