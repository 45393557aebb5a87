"""The cluster cache protects PCS: single-flight, TTLs, negative caching, stale-if-error, Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

from gateway.emulator.seed import demo_clusters, minimal
from gateway.pcs.model import enum_values
from gateway.service.store import BoundedMemoryCache, CacheStats
from tests.support.gateway import Gateway, GatewayFactory
from tests.support.servers import Emulator, RedisServer

STATUS_CLUSTERS = [c["name"] for c in demo_clusters()][: len(enum_values("ClusterStatus"))]
NAME_QUERY = (
    "query($i: String!) { cluster(identifier: $i) { name status freshness { stale ageSeconds } } }"
)


# What this module pins is the app's behaviour, not the server's: no socket needed.
pytestmark = pytest.mark.gateway("in_process")


def ask(gateway: Gateway, identifier: str, **kwargs: Any) -> Any:
    return gateway.query(NAME_QUERY, {"i": identifier}, **kwargs)


async def burst(url: str, identifiers: list[str]) -> list[Any]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:

        async def one(identifier: str) -> Any:
            response = await client.post(
                "/graphql", json={"query": NAME_QUERY, "variables": {"i": identifier}}
            )
            return response.json()

        return await asyncio.gather(*(one(i) for i in identifiers))


@pytest.fixture(params=["memory", "redis"])
def cache_url(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return "memory://"
    url: str = request.getfixturevalue("redis_url")
    return url


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.gateway("uvicorn")  # concurrent clients over a real socket
async def test_a_burst_of_200_requests_over_10_identifiers_makes_10_calls(
    start_gateway: GatewayFactory, emulator: Emulator, cache_url: str
) -> None:
    gateway = start_gateway(cache_url=cache_url)
    emulator.faults({"global": {"latencySeconds": 0.3}})
    identifiers = [STATUS_CLUSTERS[n % 10] for n in range(200)]
    answers = await burst(gateway.url, identifiers)
    assert [a["data"]["cluster"]["name"] for a in answers] == identifiers
    assert emulator.calls() == 10
    assert sorted(emulator.identifiers()) == sorted(STATUS_CLUSTERS)
    # The answer cache in front answers some of the repeats before the cluster cache sees them.
    answered_in_front = gateway.app.stats.hits
    assert gateway.stats.coalesced_waits + gateway.stats.hits + answered_in_front == 190


def test_a_repeat_within_the_ttl_makes_no_call(
    start_gateway: GatewayFactory, emulator: Emulator, cache_url: str
) -> None:
    gateway = start_gateway(cache_url=cache_url)
    first = ask(gateway, "demo-active")
    second = ask(gateway, "demo-active")
    assert first["data"]["cluster"]["name"] == second["data"]["cluster"]["name"] == "demo-active"
    assert emulator.calls() == 1


def test_a_cluster_fetched_by_name_is_found_by_id_and_the_other_way(
    gateway: Gateway, emulator: Emulator
) -> None:
    active, creating = demo_clusters()[1], demo_clusters()[0]
    assert ask(gateway, active["name"])["data"]["cluster"]["name"] == active["name"]
    assert ask(gateway, active["id"])["data"]["cluster"]["name"] == active["name"]
    assert ask(gateway, creating["id"])["data"]["cluster"]["name"] == creating["name"]
    assert ask(gateway, creating["name"])["data"]["cluster"]["name"] == creating["name"]
    assert emulator.calls() == 2


@pytest.mark.redis
def test_a_second_gateway_answers_from_the_redis_cache_the_first_filled(
    start_gateway: GatewayFactory, emulator: Emulator, redis_url: str
) -> None:
    first = start_gateway(cache_url=redis_url)
    second = start_gateway(cache_url=redis_url)
    assert ask(first, "demo-full")["data"]["cluster"]["name"] == "demo-full"
    assert ask(second, "demo-full")["data"]["cluster"]["name"] == "demo-full"
    assert emulator.calls() == 1
    assert second.stats.hits == 1


def test_settled_clusters_stay_fresh_longer_than_transitional_ones(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    gateway = start_gateway(cache_ttl_settled_seconds=30, cache_ttl_transitional_seconds=0.2)
    ask(gateway, "demo-active")
    ask(gateway, "demo-creating")
    time.sleep(0.3)
    ask(gateway, "demo-active")
    ask(gateway, "demo-creating")
    assert sorted(emulator.identifiers()) == ["demo-active", "demo-creating", "demo-creating"]


def test_a_not_found_answer_is_remembered_briefly(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    gateway = start_gateway(cache_negative_ttl_seconds=0.3)
    for _ in range(5):
        answer = ask(gateway, "gone-cluster")
        assert answer["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert emulator.calls() == 1
    time.sleep(0.4)
    ask(gateway, "gone-cluster")
    assert emulator.calls() == 2


def test_throttled_upstream_serves_the_stale_value_marked_with_its_age(
    start_gateway: GatewayFactory, emulator: Emulator, cache_url: str
) -> None:
    gateway = start_gateway(
        cache_url=cache_url,
        cache_ttl_settled_seconds=0.2,
        cache_max_stale_seconds=30,
        pcs_max_attempts=1,
    )
    assert ask(gateway, "demo-active")["data"]["cluster"]["freshness"]["stale"] is False
    time.sleep(0.3)
    for error in ("ThrottlingException", "InternalServerException"):
        emulator.faults({"clusters": {"demo-active": {"error": error}}})
        answer = ask(gateway, "demo-active")
        assert "errors" not in answer
        freshness = answer["data"]["cluster"]["freshness"]
        assert freshness["stale"] is True
        assert freshness["ageSeconds"] >= 0.3
        assert answer["extensions"]["stale"] == [
            {"path": ["cluster"], "ageSeconds": pytest.approx(freshness["ageSeconds"], abs=0.05)}
        ]


def test_past_the_maximum_staleness_the_error_arrives(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    gateway = start_gateway(
        cache_ttl_settled_seconds=0.1, cache_max_stale_seconds=0.3, pcs_max_attempts=1
    )
    ask(gateway, "demo-active")
    time.sleep(0.5)
    emulator.faults({"clusters": {"demo-active": {"error": "ThrottlingException"}}})
    answer = ask(gateway, "demo-active")
    assert answer["data"]["cluster"] is None
    assert answer["errors"][0]["extensions"]["code"] == "THROTTLED"


@pytest.mark.gateway("uvicorn")  # concurrent clients over a real socket
def test_a_forced_refresh_asks_pcs_again_through_single_flight(
    gateway: Gateway, emulator: Emulator
) -> None:
    ask(gateway, "demo-full")
    emulator.faults({"global": {"latencySeconds": 0.3}})
    query = '{ cluster(identifier: "demo-full", refresh: true) { name } }'

    async def refreshes() -> list[Any]:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
            return await asyncio.gather(
                *(client.post("/graphql", json={"query": query}) for _ in range(20))
            )

    responses = asyncio.run(refreshes())
    assert {r.json()["data"]["cluster"]["name"] for r in responses} == {"demo-full"}
    assert emulator.calls() == 2


@pytest.mark.redis
def test_requests_succeed_while_redis_is_down_and_the_cache_returns_with_it(
    start_gateway: GatewayFactory, emulator: Emulator, own_redis: RedisServer
) -> None:
    gateway = start_gateway(cache_url=own_redis.url)
    assert ask(gateway, "demo-active")["data"]["cluster"]["name"] == "demo-active"
    own_redis.stop()
    for name in ("demo-full", "demo-full", "demo-minimal"):
        assert ask(gateway, name)["data"]["cluster"]["name"] == name
    ready = gateway.http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["cache"] == "degraded"
    assert emulator.calls() == 3
    own_redis.start()
    assert gateway.http.get("/readyz").json()["checks"]["cache"] == "ok"
    ask(gateway, "demo-suspended")
    ask(gateway, "demo-suspended")
    assert emulator.calls() == 4
    client = redis.Redis.from_url(own_redis.url)
    try:
        keys = [k.decode() for k in client.keys("pcsgw:v1:*")]
    finally:
        client.close()
    assert any(k.endswith(":demo-suspended") for k in keys)


@pytest.mark.redis
def test_redis_with_a_password_works_and_a_wrong_one_only_costs_calls(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    server = RedisServer(password="s3cret-cache-pass").start()
    try:
        good = start_gateway(cache_url=server.url)
        ask(good, "demo-active")
        ask(good, "demo-active")
        assert emulator.calls() == 1
        wrong = start_gateway(cache_url=server.url.replace("s3cret", "wrong"))
        assert ask(wrong, "demo-active")["data"]["cluster"]["name"] == "demo-active"
        assert wrong.http.get("/readyz").json()["checks"]["cache"] == "degraded"
    finally:
        server.stop()


def test_a_batch_looks_up_each_distinct_identifier_once_in_order(
    gateway: Gateway, emulator: Emulator
) -> None:
    names = [f"batch-{n:02d}" for n in range(37)]
    for name in names:
        emulator.put_cluster(minimal(name))
    distinct = [*names[:20], "missing-a", *names[20:], "missing-b", "missing-c"]
    identifiers = distinct + distinct[:10]
    assert (len(identifiers), len(set(identifiers))) == (50, 40)
    answer = gateway.query(
        "query($ids: [String!]!) { clusters(identifiers: $ids) { name } }", {"ids": identifiers}
    )
    got = [None if c is None else c["name"] for c in answer["data"]["clusters"]]
    assert got == [None if i.startswith("missing") else i for i in identifiers]
    failing = {e["path"][1] for e in answer["errors"]}
    assert failing == {i for i, name in enumerate(identifiers) if name.startswith("missing")}
    assert all(e["extensions"]["code"] == "NOT_FOUND" for e in answer["errors"])
    assert emulator.calls() == 40


def test_a_batch_over_the_limit_is_refused_before_pcs(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    gateway = start_gateway(max_batch_size=5)
    answer = gateway.query(
        "query($ids: [String!]!) { clusters(identifiers: $ids) { name } }",
        {"ids": [f"cluster-{n}" for n in range(6)]},
    )
    assert answer["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert emulator.calls() == 0


@pytest.mark.slow
def test_distinct_not_found_identifiers_keep_the_memory_cache_at_its_bound(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    gateway = start_gateway(
        cache_max_entries=100, max_batch_size=200, pcs_rate_limit_per_second=10_000
    )
    for start in range(0, 1000, 200):
        ids = [f"ghost-{n}" for n in range(start, start + 200)]
        gateway.query(
            "query($ids: [String!]!) { clusters(identifiers: $ids) { name } }", {"ids": ids}
        )
    backend = gateway.app.state.gateway.store.backend
    assert emulator.calls() == 1000
    assert len(backend) == 100
    assert gateway.stats.evictions == 900


async def test_the_memory_bound_holds_for_100000_distinct_keys() -> None:
    stats = CacheStats()
    cache = BoundedMemoryCache(max_entries=5000, stats=stats, timeout=None)
    for n in range(100_000):
        await cache.set(f"pcsgw:v1:x:ghost-{n}", b"{}", ttl=60)
    assert len(cache) == 5000
    assert stats.evictions == 95_000
    assert await cache.get("pcsgw:v1:x:ghost-99999") == b"{}"
    assert await cache.get("pcsgw:v1:x:ghost-0") is None


def test_cache_keys_carry_version_endpoint_and_identifier(gateway: Gateway) -> None:
    service = gateway.app.state.gateway.service
    key = service.key("demo-active")
    assert key.startswith("pcsgw:v1:")
    assert key.endswith(":demo-active")
    assert "us-east-1" in key and "127.0.0.1" in key
