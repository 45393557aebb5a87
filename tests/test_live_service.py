"""The live status hub over the real cluster service, PCS client and emulator."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest

from gateway.config import Settings
from gateway.pcs.client import PcsClient
from gateway.service import store as cache
from gateway.service.clusters import ClusterService
from gateway.service.live import LiveStatus, SlowConsumer, TokenExpired
from gateway.service.store import CacheStats, CacheStore
from tests.support.live import FAST, LiveEmulator, running_live_emulator


@pytest.fixture
def live_emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveEmulator]:
    with running_live_emulator(monkeypatch) as emulator:
        yield emulator


@asynccontextmanager
async def cluster_service(settings: Settings) -> AsyncIterator[ClusterService]:
    stats = CacheStats()
    store = CacheStore(cache.make_backend(settings, stats), name="memory", stats=stats)
    async with PcsClient.open(settings) as client:
        service = ClusterService(client, store, settings, stats)
        try:
            yield service
        finally:
            await service.close()
            await store.close()


async def test_a_subscription_ends_when_its_token_expires(live_emulator: LiveEmulator) -> None:
    settings = Settings(**FAST)
    now = [1000.0]
    live = LiveStatus(settings, clock=lambda: now[0])
    async with cluster_service(settings) as service:
        updates = live.updates(service, "us-east-1", "live-0", caller="c", expires_at=1000.2)
        first = await anext(updates)
        assert first.cluster.name == "live-0"
        assert live.by_caller["c"] == 1
        with pytest.raises(TokenExpired, match="expired"):
            await asyncio.wait_for(anext(updates), 5)
        assert live.stats.subscriptions == 0
        assert "c" not in live.by_caller
        await live.close()


async def test_a_subscriber_that_falls_behind_is_ended(live_emulator: LiveEmulator) -> None:
    settings = Settings(**FAST, live_send_queue=1)
    live = LiveStatus(settings)
    async with cluster_service(settings) as service:
        updates = live.updates(service, "us-east-1", "live-1")
        await anext(updates)
        # Two changes while the subscriber reads nothing: one more than its queue holds.
        await asyncio.to_thread(live_emulator.set_status, "live-1", "UPDATING")
        for _ in range(100):
            if live.stats.polls >= 2:
                break
            await asyncio.sleep(0.05)
        await asyncio.to_thread(live_emulator.set_status, "live-1", "DELETING")
        for _ in range(100):
            if live.stats.slow_consumers:
                break
            await asyncio.sleep(0.05)
        assert live.stats.slow_consumers == 1
        with pytest.raises(SlowConsumer):
            await asyncio.wait_for(anext(updates), 5)
        await live.close()


async def test_the_poller_stops_after_its_last_subscriber_leaves(
    live_emulator: LiveEmulator,
) -> None:
    settings = Settings(**FAST)
    live = LiveStatus(settings)
    async with cluster_service(settings) as service:
        updates = live.updates(service, "us-east-1", "live-2")
        await anext(updates)
        watch = live.watches[("us-east-1", "live-2")]
        assert live.pollers == 1
        await updates.aclose()
        assert watch.task is not None
        await asyncio.wait_for(watch.task, 2 * settings.live_poll_seconds(settled=True))
        assert live.pollers == 0
        await live.close()
