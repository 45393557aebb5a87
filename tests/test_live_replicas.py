"""Live status across replicas sharing a real Redis: one poll per cluster, one PCS budget.

The poll and its hand-over run in three `pcs-gateway serve` processes; the cold burst and the
budget in three servers of this process, each with its own event loop.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack, ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from gateway.app import create_app
from gateway.config import Settings
from tests.support.live import (
    CLUSTER_UPDATED,
    INTERVAL,
    GatewayProcess,
    LiveEmulator,
    SseClient,
    running_live_emulator,
    statuses,
    until,
    ws_client,
)
from tests.support.servers import RedisServer, ServerThread, free_port

pytestmark = [pytest.mark.redis]


class Replicas:
    """Gateways sharing one Redis, each with its own event loop, pollers and leases."""

    def __init__(self, stack: ExitStack) -> None:
        self.stack = stack
        self.servers: list[ServerThread] = []

    def start(self, count: int, **settings: Any) -> list[ServerThread]:
        for _ in range(count):
            app = create_app(Settings(**settings))
            server = ServerThread(app).start()
            server.app = app  # type: ignore[attr-defined]
            self.stack.callback(server.stop)
            self.servers.append(server)
        return self.servers

    @staticmethod
    def leases_held(server: ServerThread) -> int:
        coordination = server.app.state.gateway.coordination  # type: ignore[attr-defined]
        return len(coordination.leases.held)


@pytest.fixture
def live_emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveEmulator]:
    with running_live_emulator(monkeypatch) as emulator:
        yield emulator


@pytest.fixture
def replicas() -> Iterator[Replicas]:
    with ExitStack() as stack:
        yield Replicas(stack)


def shared(redis_url: str, **more: Any) -> dict[str, Any]:
    return {
        "cache_url": redis_url,
        "cache_ttl_settled_seconds": INTERVAL,
        "cache_ttl_transitional_seconds": INTERVAL,
        "live_lease_seconds": 2.0,
        "websockets": True,
        **more,
    }


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis of the test's own: no other test's keys can disturb its leases."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


def leader_of(redis_url: str, identifier: str) -> int:
    """The pid of the process leading a cluster's poll: the owner token of its lease."""
    client = redis.Redis.from_url(redis_url)
    try:
        keys = [
            k for k in client.scan_iter("pcsgw:lease:live:*") if k.endswith(identifier.encode())
        ]
        assert len(keys) == 1, keys
        owner = client.get(keys[0])
    finally:
        client.close()
    assert isinstance(owner, bytes)
    return int(owner.decode().split(":")[1])


@pytest.mark.slow
async def test_three_processes_poll_each_cluster_once_and_survive_the_leaders_death(
    live_emulator: LiveEmulator, own_redis: RedisServer, tmp_path: Path
) -> None:
    lease = 2.0
    settings = {
        "AWS_ENDPOINT_URL_PCS": live_emulator.url,
        "PCS_GATEWAY_CACHE_URL": own_redis.url,
        "PCS_GATEWAY_CACHE_TTL_SETTLED_SECONDS": str(INTERVAL),
        "PCS_GATEWAY_CACHE_TTL_TRANSITIONAL_SECONDS": str(INTERVAL),
        "PCS_GATEWAY_LIVE_LEASE_SECONDS": str(lease),
        "PCS_GATEWAY_WEBSOCKETS": "true",
        "PCS_GATEWAY_RATE_LIMIT": "off",
    }
    gateways = [GatewayProcess(tmp_path, settings) for _ in range(3)]
    names = [f"live-{n}" for n in range(5)]
    try:
        for gateway in gateways:
            await asyncio.to_thread(gateway.wait_ready)
        async with AsyncExitStack() as stack:
            # 100 subscribers a process: 90 on one WebSocket, 10 SSE streams; 20 a cluster.
            sockets = [await stack.enter_async_context(ws_client(g.url)) for g in gateways]
            http = await stack.enter_async_context(httpx.AsyncClient(timeout=60))
            subscribers: list[tuple[int, str, Callable[[], list[dict[str, Any]]]]] = []
            streams = []
            for index, (gateway, socket) in enumerate(zip(gateways, sockets, strict=True)):
                for n in range(90):
                    await socket.subscribe(str(n), CLUSTER_UPDATED, {"id": names[n % 5]})
                    subscribers.append(
                        (index, names[n % 5], functools.partial(socket.data, str(n)))
                    )
                for n in range(10):
                    sse = SseClient()
                    run = sse.run(http, CLUSTER_UPDATED, {"id": names[n % 5]}, url=gateway.url)
                    streams.append(asyncio.create_task(run))
                    subscribers.append((index, names[n % 5], sse.data))

            def counts(cluster: str | None = None, alive: set[int] | None = None) -> list[int]:
                return [
                    len(read())
                    for process, name, read in subscribers
                    if (cluster is None or name == cluster) and (alive is None or process in alive)
                ]

            assert len(subscribers) == 300
            assert await until(lambda: counts() == [1] * 300, 30)

            # One leader per cluster among the three: one poll an interval, plus an edge.
            started = time.time()
            await asyncio.sleep(4 * INTERVAL)
            calls = Counter(c["identifier"] for c in live_emulator.get_cluster_calls(since=started))
            assert set(calls) <= set(names)
            assert all(3 <= calls[name] <= 5 for name in names), calls
            held = [await asyncio.to_thread(g.metric, "pcsgw_live_leases") for g in gateways]
            assert sum(held) == 5, held

            # A flip reaches its 60 subscribers on every process within an interval, once.
            live_emulator.set_status("live-2", "UPDATING")
            assert await until(lambda: counts("live-2") == [2] * 60, INTERVAL + 1.0)
            await asyncio.sleep(2 * INTERVAL)
            for _, name, read in subscribers:
                expected = ["ACTIVE", "UPDATING"] if name == "live-2" else ["ACTIVE"]
                assert statuses(read()) == expected

            # SIGKILL the process leading live-3's poll: another takes the lease and polls.
            pid = await asyncio.to_thread(leader_of, own_redis.url, "live-3")
            (leader,) = [i for i, g in enumerate(gateways) if g.pid == pid]
            gateways[leader].kill()
            killed = time.monotonic()
            live_emulator.set_status("live-3", "UPDATING")
            alive = {0, 1, 2} - {leader}
            assert await until(lambda: counts("live-3", alive) == [2] * 40, lease + INTERVAL)
            assert time.monotonic() - killed <= lease + INTERVAL
            new_pid = await asyncio.to_thread(leader_of, own_redis.url, "live-3")
            assert new_pid in {gateways[i].pid for i in alive}
            await asyncio.sleep(INTERVAL)
            for process, name, read in subscribers:
                if process in alive and name == "live-3":
                    assert statuses(read()) == ["ACTIVE", "UPDATING"]
            held = [await asyncio.to_thread(gateways[i].metric, "pcsgw_live_leases") for i in alive]
            assert sum(held) == 5, held
            for stream in streams:
                stream.cancel()
            await asyncio.gather(*streams, return_exceptions=True)
    finally:
        for gateway in gateways:
            await asyncio.to_thread(gateway.stop)


async def test_cold_burst_across_replicas_makes_one_call(
    live_emulator: LiveEmulator, replicas: Replicas, redis_url: str
) -> None:
    servers = replicas.start(3, **shared(redis_url, answer_cache_max_entries=0))
    live_emulator.faults({"operations": {"GetCluster": {"latencySeconds": 0.3}}})
    query = {"query": '{ cluster(identifier: "live-9") { name status } }'}
    async with httpx.AsyncClient(timeout=10) as http:
        answers = await asyncio.gather(
            *(http.post(f"{s.url}/graphql", json=query) for s in servers for _ in range(5))
        )
    assert [a.json()["data"]["cluster"]["name"] for a in answers] == ["live-9"] * 15
    calls = [c for c in live_emulator.get_cluster_calls() if c["identifier"] == "live-9"]
    assert len(calls) == 1


@pytest.mark.slow
async def test_replicas_keep_pcs_at_the_configured_rate_in_total(
    live_emulator: LiveEmulator, replicas: Replicas, redis_url: str
) -> None:
    rate = 5.0
    servers = replicas.start(
        3,
        **shared(
            redis_url,
            pcs_rate_limit_per_second=rate,
            pcs_rate_limit_burst=rate,
            pcs_rate_limit_max_wait_seconds=0.2,
            answer_cache_max_entries=0,
            rate_limit="",
            replicas=3,
        ),
    )
    duration = 3.0
    started = time.time()
    counter = iter(range(1_000_000))

    async def flood(http: httpx.AsyncClient, url: str) -> None:
        while time.time() - started < duration:
            name = f"nothing-{next(counter)}"
            await http.post(
                f"{url}/graphql", json={"query": f'{{ cluster(identifier: "{name}") {{ name }} }}'}
            )

    async with httpx.AsyncClient(timeout=10) as http:
        await asyncio.gather(*(flood(http, s.url) for s in servers for _ in range(4)))
        readiness = (await http.get(f"{servers[0].url}/readyz")).json()
    calls = live_emulator.get_cluster_calls(since=started)
    allowed = rate + rate * (time.time() - started)
    assert rate * duration / 2 <= len(calls) <= allowed + 1, (len(calls), allowed)
    assert readiness["checks"]["rateBudget"] == "shared"


async def test_unreachable_redis_degrades_to_each_replica_alone(
    live_emulator: LiveEmulator, replicas: Replicas
) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    (server,) = replicas.start(1, **shared("memory://", coordination_url=dead, replicas=4))
    async with ws_client(server.url) as client:
        await client.subscribe("d", CLUSTER_UPDATED, {"id": "live-1"})
        assert await until(lambda: len(client.data("d")) == 1, 10)
        live_emulator.set_status("live-1", "UPDATING")
        assert await until(lambda: len(client.data("d")) == 2, INTERVAL + 2)
    async with httpx.AsyncClient(base_url=server.url) as http:
        readiness = (await http.get("/readyz")).json()
        metrics = (await http.get("/metrics")).text
    assert readiness["status"] == "ready"
    assert readiness["checks"]["coordination"] == "degraded"
    assert readiness["checks"]["rateBudget"] == "degraded"
    assert "pcsgw_upstream_ratelimit_shared 0.0" in metrics
    assert "pcsgw_coordination_connected 0.0" in metrics
