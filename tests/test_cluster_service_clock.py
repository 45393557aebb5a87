"""The cluster service's freshness rules on a clock the test moves, over the real client.

TTLs by status, the negative TTL and the stale window are decided on the service's clock;
PCS is the emulator, called through the real aioboto3 client.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from gateway.config import Settings
from gateway.pcs import errors
from gateway.pcs.client import PcsClient
from gateway.service.clusters import ClusterService
from gateway.service.store import CacheStats, CacheStore, describe, make_backend
from tests.support.clock import FakeClock
from tests.support.servers import Emulator

SETTLED_TTL = 30.0
TRANSITIONAL_TTL = 5.0
NEGATIVE_TTL = 10.0
MAX_STALE = 60.0


@pytest.fixture
def clock() -> FakeClock:
    # Unix time: the service stamps what it stores with it.
    return FakeClock(1_800_000_000.0)


@pytest.fixture
async def service(emulator: Emulator, clock: FakeClock) -> AsyncIterator[ClusterService]:
    emulator.reset()
    settings = Settings(
        cache_ttl_settled_seconds=SETTLED_TTL,
        cache_ttl_transitional_seconds=TRANSITIONAL_TTL,
        cache_negative_ttl_seconds=NEGATIVE_TTL,
        cache_max_stale_seconds=MAX_STALE,
        pcs_max_attempts=1,
    )
    stats = CacheStats()
    store = CacheStore(make_backend(settings, stats), name=describe(settings), stats=stats)
    async with PcsClient.open(settings, endpoint_url=emulator.url) as client:
        clusters = ClusterService(client, store, settings, stats, clock=clock)
        try:
            yield clusters
        finally:
            await clusters.close()
            await store.close()


async def test_settled_clusters_stay_fresh_longer_than_transitional_ones(
    service: ClusterService, clock: FakeClock, emulator: Emulator
) -> None:
    await service.get("demo-active")
    await service.get("demo-creating")
    clock.advance(TRANSITIONAL_TTL)
    await service.get("demo-active")
    await service.get("demo-creating")
    assert sorted(emulator.identifiers()) == ["demo-active", "demo-creating", "demo-creating"]
    clock.advance(SETTLED_TTL - TRANSITIONAL_TTL)
    await service.get("demo-active")
    assert emulator.identifiers().count("demo-active") == 2


async def test_a_not_found_answer_is_remembered_for_the_negative_ttl(
    service: ClusterService, clock: FakeClock, emulator: Emulator
) -> None:
    for _ in range(3):
        with pytest.raises(errors.ResourceNotFound):
            await service.get("gone-cluster")
    clock.advance(NEGATIVE_TTL - 0.1)
    with pytest.raises(errors.ResourceNotFound):
        await service.get("gone-cluster")
    assert emulator.calls() == 1
    clock.advance(0.1)
    with pytest.raises(errors.ResourceNotFound):
        await service.get("gone-cluster")
    assert emulator.calls() == 2


async def test_a_failing_pcs_is_answered_stale_within_the_window_then_the_error_arrives(
    service: ClusterService, clock: FakeClock, emulator: Emulator
) -> None:
    fresh = await service.get("demo-active")
    assert fresh.stale is False
    emulator.faults({"clusters": {"demo-active": {"error": "ThrottlingException"}}})
    clock.advance(SETTLED_TTL + 1)
    stale = await service.get("demo-active")
    assert stale.stale is True
    assert stale.age_seconds(clock.now) == SETTLED_TTL + 1
    assert stale.cluster.name == "demo-active"
    clock.advance(MAX_STALE - SETTLED_TTL)
    with pytest.raises(errors.Throttled):
        await service.get("demo-active")
    assert emulator.calls() == 3


async def test_a_hot_cluster_is_fetched_again_in_the_background_near_the_end_of_its_freshness(
    service: ClusterService, clock: FakeClock, emulator: Emulator
) -> None:
    first = await service.get("demo-active")
    # The last second of 30 s is the window (at most a tenth of the freshness).
    clock.advance(SETTLED_TTL - 1.5)
    assert await service.get("demo-active") is first
    assert service.held("demo-active") is first
    assert emulator.calls() == 1 and service.stats.refreshes_ahead == 0
    clock.advance(1.0)
    # Answered at once with the value held, while one call goes to PCS behind it.
    assert service.held("demo-active") is first
    assert await service.get("demo-active") is first
    assert service.stats.refreshes_ahead == 1
    await asyncio.gather(*service._flights.values())
    assert emulator.calls() == 2
    renewed = service.held("demo-active")
    assert renewed is not None and renewed is not first
    assert renewed.fetched_at == clock() and not renewed.stale
    # Past the old value's freshness, the new one is served without another call.
    clock.advance(1.0)
    assert await service.get("demo-active") is renewed
    assert emulator.calls() == 2


async def test_a_failed_refresh_ahead_leaves_the_value_until_it_expires(
    service: ClusterService, clock: FakeClock, emulator: Emulator
) -> None:
    first = await service.get("demo-active")
    emulator.faults({"clusters": {"demo-active": {"error": "InternalServerException"}}})
    clock.advance(SETTLED_TTL - 0.5)
    assert await service.get("demo-active") is first
    await asyncio.gather(*service._flights.values(), return_exceptions=True)
    assert service.stats.refreshes_ahead == 1
    assert await service.get("demo-active") is first  # still fresh: one refresh per flight
    emulator.faults(None)
    clock.advance(1.0)
    renewed = await service.get("demo-active")
    assert renewed is not first and not renewed.stale


async def test_refresh_ahead_turned_off_asks_pcs_only_once_a_value_has_expired(
    emulator: Emulator, clock: FakeClock
) -> None:
    emulator.reset()
    settings = Settings(cache_ttl_settled_seconds=SETTLED_TTL, cache_refresh_ahead_seconds=0)
    stats = CacheStats()
    store = CacheStore(make_backend(settings, stats), name=describe(settings), stats=stats)
    async with PcsClient.open(settings, endpoint_url=emulator.url) as client:
        service = ClusterService(client, store, settings, stats, clock=clock)
        first = await service.get("demo-active")
        clock.advance(SETTLED_TTL - 0.1)
        assert await service.get("demo-active") is first
        await asyncio.sleep(0.05)
        assert emulator.calls() == 1 and stats.refreshes_ahead == 0
        clock.advance(0.1)
        assert await service.get("demo-active") is not first
        assert emulator.calls() == 2
        await service.close()
        await store.close()
