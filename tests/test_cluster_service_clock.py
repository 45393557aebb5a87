"""The cluster service's freshness rules on a clock the test moves, over the real client.

TTLs by status, the negative TTL and the stale window are decided on the service's clock;
PCS is the emulator, called through the real aioboto3 client.
"""

from __future__ import annotations

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
