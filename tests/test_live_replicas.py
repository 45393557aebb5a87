"""Live status across replicas sharing a real Redis: one poll per cluster, one PCS budget."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import AsyncExitStack, ExitStack
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.config import Settings
from tests.support.live import (
    CLUSTER_UPDATED,
    INTERVAL,
    LiveEmulator,
    running_live_emulator,
    statuses,
    until,
    ws_client,
)
from tests.support.servers import ServerThread, free_port

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


def kill(server: ServerThread) -> None:
    """Stop a replica's event loop where it stands: no drain, no lease released."""
    server.loop.call_soon_threadsafe(server.loop.stop)
    server.thread.join(timeout=10)


@pytest.mark.slow
async def test_three_replicas_poll_each_cluster_once_per_interval(
    live_emulator: LiveEmulator, replicas: Replicas, redis_url: str
) -> None:
    servers = replicas.start(3, **shared(redis_url))
    names = [f"live-{n}" for n in range(5)]
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(ws_client(s.url)) for s in servers]
        for client in clients:
            for n in range(100):
                await client.subscribe(str(n), CLUSTER_UPDATED, {"id": names[n % 5]})

        def events() -> list[int]:
            return [len(c.data(str(n))) for c in clients for n in range(100)]

        assert await until(lambda: events() == [1] * 300, 20)
        started = time.time()
        await asyncio.sleep(4 * INTERVAL)
        calls = Counter(c["identifier"] for c in live_emulator.get_cluster_calls(since=started))
        # One leader per cluster among the three: at most one poll an interval, plus an edge.
        assert set(calls) <= set(names)
        assert all(3 <= calls[name] <= 5 for name in names), calls
        assert sum(replicas.leases_held(s) for s in servers) == 5

        live_emulator.set_status("live-2", "UPDATING")
        assert await until(lambda: sum(events()) == 360, INTERVAL + 1.0)
        await asyncio.sleep(2 * INTERVAL)
        assert sum(events()) == 360  # once each, however many replicas heard it
        for client in clients:
            assert statuses(client.data("2")) == ["ACTIVE", "UPDATING"]


@pytest.mark.slow
async def test_killing_the_leader_hands_the_poll_over_within_the_lease_time(
    live_emulator: LiveEmulator, replicas: Replicas, redis_url: str
) -> None:
    servers = replicas.start(3, **shared(redis_url))
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(ws_client(s.url)) for s in servers]
        for client in clients:
            await client.subscribe("w", CLUSTER_UPDATED, {"id": "live-8"})
        assert await until(lambda: all(len(c.data("w")) == 1 for c in clients), 10)
        assert await until(lambda: sum(replicas.leases_held(s) for s in servers) == 1, 2 * INTERVAL)
        leader = next(i for i, s in enumerate(servers) if replicas.leases_held(s) == 1)
        kill(servers[leader])
        killed = time.monotonic()
        live_emulator.set_status("live-8", "UPDATING")
        survivors = [c for i, c in enumerate(clients) if i != leader]
        lease = 2.0
        assert await until(lambda: all(len(c.data("w")) == 2 for c in survivors), lease + 2.0)
        assert time.monotonic() - killed <= lease + INTERVAL + 1.0
        held = [replicas.leases_held(s) for i, s in enumerate(servers) if i != leader]
        assert sorted(held) == [0, 1]
        for client in survivors:
            assert statuses(client.data("w")) == ["ACTIVE", "UPDATING"]


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
