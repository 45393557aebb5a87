"""The cluster service: cache, single-flight, TTL by status, negative caching, stale-if-error.

Resolvers ask this service for clusters, never the PCS client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any, Generic, TypeVar

import orjson
from redis.exceptions import RedisError

from gateway.config import Settings
from gateway.coordination.lease import Leases
from gateway.lru import LRU
from gateway.pcs import errors
from gateway.pcs.client import FetchedCluster, PcsClient
from gateway.pcs.cluster import Cluster, parse_cluster
from gateway.pcs.model import identifier_pattern
from gateway.service.observer import LookupObserver, NoLookupObserver
from gateway.service.store import CacheStats, CacheStore

log = logging.getLogger(__name__)

#: Bumped whenever the entry format changes, so a new release never reads old entries.
KEY_VERSION = "v1"
#: Longer than any name (41) or id PCS makes; the model's pattern alone has no upper bound.
MAX_IDENTIFIER_LENGTH = 64
#: Parsed answers kept beside the memory backend's encoded entries, most recently used.
NEAR_COPIES_BESIDE_MEMORY = 1024
#: How often a replica waiting on another's fetch of a cluster reads the cache.
COLD_MISS_READ_SECONDS = 0.02

W = TypeVar("W")


class InvalidIdentifier(ValueError):
    """An identifier the gateway rejects before calling PCS."""


@cache
def _identifier_pattern() -> re.Pattern[str]:
    return re.compile(identifier_pattern())


def check_identifier(identifier: str) -> str:
    """Return the identifier when PCS could accept it, else raise InvalidIdentifier."""
    if not identifier or len(identifier) > MAX_IDENTIFIER_LENGTH:
        raise InvalidIdentifier(
            f"A cluster identifier is 1 to {MAX_IDENTIFIER_LENGTH} characters long."
        )
    if _identifier_pattern().fullmatch(identifier) is None:
        raise InvalidIdentifier(
            "A cluster identifier is a cluster name (a letter, then 2 to 40 letters, digits "
            "or hyphens) or a cluster id (pcs_ followed by letters and digits)."
        )
    return identifier


@dataclass(frozen=True, slots=True)
class ClusterAnswer:
    """A cluster with the facts about its freshness."""

    cluster: Cluster
    fetched_at: float
    fresh_until: float
    stale: bool
    request_id: str | None
    #: The cluster as PCS sent it (JSON), for replicas that pass it on; None when not kept.
    wire: dict[str, Any] | None = None
    #: What readers derive once from this value (it never changes), by their own keys; it
    #: lives and goes with the answer. Bounded by each reader.
    derived: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)

    def age_seconds(self, now: float | None = None) -> float:
        """Seconds since PCS sent this value."""
        return max(0.0, (time.time() if now is None else now) - self.fetched_at)

    @property
    def fetched_at_datetime(self) -> datetime:
        """When PCS sent this value."""
        return datetime.fromtimestamp(self.fetched_at, tz=UTC)


async def cancel_flights(flights: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel PCS calls in flight and wait until each has ended."""
    tasks = list(flights)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@dataclass(frozen=True, slots=True)
class StoredEntry(Generic[W]):
    """A cached PCS answer: when it was fetched, its wire form (None: not found), its request id."""

    fetched_at: float
    wire: W
    request_id: str | None

    def encode(self) -> bytes:
        return orjson.dumps({"t": self.fetched_at, "c": self.wire, "r": self.request_id})

    @staticmethod
    def decode(raw: bytes) -> StoredEntry[Any] | None:
        """The entry `encode` wrote; None for bytes it did not write."""
        try:
            data = orjson.loads(raw)
            return StoredEntry(
                fetched_at=float(data["t"]), wire=data["c"], request_id=data.get("r")
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None


class ClusterService:
    """Answers clusters from the cache or PCS, at most one PCS call per identifier at once."""

    def __init__(
        self,
        client: PcsClient,
        store: CacheStore,
        settings: Settings,
        stats: CacheStats,
        *,
        clock: Callable[[], float] = time.time,
        observer: LookupObserver | None = None,
        leases: Leases | None = None,
    ) -> None:
        self._client = client
        # With Redis, replicas missing one cluster at once wait for the one that holds its
        # fetch lease, instead of each asking PCS.
        self._leases = leases if store.kind == "redis" else None
        self._observer = observer or NoLookupObserver()
        self._store = store
        self._settings = settings
        self.stats = stats
        self._clock = clock
        self._flights: dict[str, asyncio.Task[ClusterAnswer]] = {}
        # Fresh answers are also kept here, parsed (bounded, never past their freshness): a
        # hot cluster costs no Redis round trip and no decoding, a burst that missed Redis
        # while a fetch landed finds its answer, and a held answer is found without waiting.
        # Beside the memory backend's own entries only the most recently used are kept: a
        # parsed cluster takes several times its encoded bytes.
        self._near_limit = settings.cache_max_entries
        if store.kind != "redis":
            self._near_limit = min(self._near_limit, NEAR_COPIES_BESIDE_MEMORY)
        self._near: LRU[str, ClusterAnswer] = LRU(self._near_limit)
        self._prefix = f"pcsgw:{KEY_VERSION}:{client.account}:{client.endpoint}:"

    async def close(self) -> None:
        """Cancel the PCS calls still in flight, before the client under them closes."""
        await cancel_flights(self._flights.values())

    def key(self, identifier: str) -> str:
        """The cache key of an identifier: version, account, PCS endpoint and region, identifier."""
        return self._prefix + identifier

    def answer_of(
        self, wire: dict[str, Any], fetched_at: float, request_id: str | None
    ) -> ClusterAnswer:
        """An answer from a cluster another replica fetched and passed on."""
        cluster = parse_cluster(wire)
        return ClusterAnswer(
            cluster, fetched_at, fetched_at + self.ttl(cluster), False, request_id, wire
        )

    def ttl(self, cluster: Cluster) -> float:
        """Freshness by status: settled clusters change rarely, others soon."""
        if cluster.settled:
            return self._settings.cache_ttl_settled_seconds
        return self._settings.cache_ttl_transitional_seconds

    def held(self, identifier: str) -> ClusterAnswer | None:
        """The fresh answer this replica holds parsed, found without waiting; None: `get`
        must be awaited. A lookup found so is reported as `get` reports a hit."""
        key = self._prefix + identifier
        answer = self._near_answer(key)
        if answer is None:
            return None
        with self._observer.reading(self._store.kind) as read:
            read.found("hit")
        self._hit(identifier, key, answer)
        return answer

    def _hit(self, identifier: str, key: str, answer: ClusterAnswer) -> None:
        """A lookup answered from this replica or the cache: counted, refreshed ahead."""
        self.stats.hits += 1
        self._observer.looked_up("hit")
        self._refresh_ahead(identifier, key, answer)

    def _refresh_ahead(self, identifier: str, key: str, answer: ClusterAnswer) -> None:
        """Fetch a cluster again in the background when it is asked for near the end of its
        freshness (the last `cache_refresh_ahead_seconds`, at most the last tenth of it), so
        that its callers keep being answered while PCS is asked; those that come once the
        value has expired wait for that same call."""
        ahead = self._settings.cache_refresh_ahead_seconds
        if ahead <= 0 or key in self._flights or answer.stale:
            return
        window = min(ahead, (answer.fresh_until - answer.fetched_at) / 10)
        if self._clock() < answer.fresh_until - window:
            return
        self.stats.refreshes_ahead += 1
        fetch = self._fetch_ahead(identifier, key, answer)
        self._start_flight(key, fetch).add_done_callback(_retrieved)

    async def _fetch_ahead(self, identifier: str, key: str, held: ClusterAnswer) -> ClusterAnswer:
        """A newer value another replica stored in the shared cache, else PCS's."""
        if self._store.kind == "redis":
            entry = await self._read(key)
            if entry is not None and entry.wire is not None and entry.fetched_at > held.fetched_at:
                newer = self._fresh_answer(identifier, entry)
                if newer is not None:
                    self._keep_near([key], newer)
                    return newer
        return await self._fetch(identifier, key)

    def _start_flight(
        self, key: str, fetch: Coroutine[Any, Any, ClusterAnswer]
    ) -> asyncio.Task[ClusterAnswer]:
        """The one fetch of `key` now, which every lookup of it waits on until it ends."""
        flight = asyncio.create_task(fetch)
        self._flights[key] = flight
        flight.add_done_callback(lambda _: self._flights.pop(key, None))
        return flight

    async def get(self, identifier: str, *, refresh: bool = False) -> ClusterAnswer:
        """The cluster by name or id; raises InvalidIdentifier or a PcsError.

        Each lookup's outcome (hit, negative_hit, miss, coalesced, stale) and the AWS
        request id of the call it waited on are reported to the observer.
        """
        check_identifier(identifier)
        key = self.key(identifier)
        if not refresh:
            answer = await self._lookup(identifier, key)
            if answer is not None:
                self._hit(identifier, key, answer)
                return answer
        flight = self._flights.get(key)
        if flight is None:
            self.stats.misses += 1
            outcome = "miss"
            flight = self._start_flight(key, self._fetch(identifier, key))
        else:
            self.stats.coalesced_waits += 1
            outcome = "coalesced"
        try:
            # Shielded: a caller that gives up (deadline, disconnect) must not cancel the
            # fetch others are waiting on; its answer still fills the cache.
            answer = await asyncio.shield(flight)
        except errors.PcsError as exc:
            self._observer.looked_up(outcome, exc.request_id)
            raise
        if answer.stale:
            self._observer.looked_up("stale")
        else:
            self._observer.looked_up(outcome, answer.request_id)
        return answer

    async def _lookup(self, identifier: str, key: str) -> ClusterAnswer | None:
        """A fresh answer from the near copy or the store; None: PCS must be asked."""
        with self._observer.reading(self._store.kind) as read:
            try:
                answer = self._near_answer(key)
                if answer is None and key not in self._flights:
                    entry = await self._read(key)
                    if entry is not None:
                        answer = self._fresh_answer(identifier, entry)
                        if answer is not None:
                            self._keep_near([key], answer)
                    # A fetch may have landed while the read was under way (or timed out):
                    # its answer is as new as anything the read could have found.
                    answer = answer or self._near_answer(key)
            except errors.ResourceNotFound:
                self._observer.looked_up("negative_hit")
                read.found("negative_hit")
                raise
            read.found("miss" if answer is None else "hit")
            return answer

    def _near_answer(self, key: str) -> ClusterAnswer | None:
        answer = self._near.get(key)
        if answer is None:
            return None
        if answer.fresh_until <= self._clock():
            self._near.pop(key)
            return None
        return answer

    def _keep_near(self, keys: list[str], answer: ClusterAnswer) -> None:
        if self._near_limit == 0:
            return
        for key in keys:
            self._near.put(key, answer)

    def _fresh_answer(
        self, identifier: str, entry: StoredEntry[dict[str, Any] | None]
    ) -> ClusterAnswer | None:
        now = self._clock()
        if entry.wire is None:
            if now - entry.fetched_at < self._settings.cache_negative_ttl_seconds:
                self.stats.negative_hits += 1
                raise _not_found(identifier, entry.request_id)
            return None
        cluster = parse_cluster(entry.wire)
        fresh_until = entry.fetched_at + self.ttl(cluster)
        if now >= fresh_until:
            return None
        return ClusterAnswer(
            cluster, entry.fetched_at, fresh_until, False, entry.request_id, entry.wire
        )

    async def _fetch(self, identifier: str, key: str) -> ClusterAnswer:
        wait = self._settings.live_cold_miss_wait_seconds
        if self._leases is None or wait <= 0:
            return await self._call(identifier, key)
        lease = self._leases.lease(f"pcsgw:lease:fetch:{key}", wait + 1.0)
        try:
            held = await lease.acquire()
        except (RedisError, OSError):
            return await self._call(identifier, key)
        if not held:
            answer = await self._answer_of_holder(identifier, key, lease.taken, wait)
            if answer is not None:
                return answer
        try:
            return await self._call(identifier, key)
        finally:
            if held:
                with contextlib.suppress(RedisError, OSError):
                    await lease.release()

    async def _answer_of_holder(
        self,
        identifier: str,
        key: str,
        taken: Callable[[], Awaitable[bool]],
        wait: float,
    ) -> ClusterAnswer | None:
        """The answer another replica's fetch stores, read within `wait`; None: ask PCS."""
        deadline = self._clock() + wait
        while self._clock() < deadline:
            await asyncio.sleep(COLD_MISS_READ_SECONDS)
            entry = await self._read(key)
            if entry is not None:
                answer = self._fresh_answer(identifier, entry)
                if answer is not None:
                    self._keep_near([key], answer)
                    return answer
            try:
                if not await taken():
                    return None  # the holder is gone without storing an answer
            except (RedisError, OSError):
                return None
        return None

    async def _call(self, identifier: str, key: str) -> ClusterAnswer:
        self.stats.upstream_calls += 1
        try:
            fetched = await self._client.get_cluster(identifier)
        except errors.ResourceNotFound as exc:
            await self._remember_missing(key, exc)
            raise
        except errors.PcsError as exc:
            stale = await self._stale_answer(key, exc)
            if stale is None:
                raise
            return stale
        return await self._remember(identifier, fetched)

    async def _remember(self, identifier: str, fetched: FetchedCluster) -> ClusterAnswer:
        now = self._clock()
        cluster = fetched.cluster
        ttl = self.ttl(cluster)
        entry = StoredEntry(fetched_at=now, wire=fetched.wire, request_id=fetched.request_id)
        # Stored under name and id alike: whichever a caller uses next finds it.
        keys = sorted({self.key(identifier), self.key(cluster.name), self.key(cluster.id)})
        await self._store.set_many(
            keys, entry.encode(), ttl=ttl + self._settings.cache_max_stale_seconds
        )
        answer = ClusterAnswer(cluster, now, now + ttl, False, fetched.request_id, fetched.wire)
        self._keep_near(keys, answer)
        return answer

    async def _remember_missing(self, key: str, exc: errors.ResourceNotFound) -> None:
        self._near.pop(key)
        entry = StoredEntry(fetched_at=self._clock(), wire=None, request_id=exc.request_id)
        await self._store.set_many(
            [key], entry.encode(), ttl=self._settings.cache_negative_ttl_seconds
        )

    async def stale_copy(self, identifier: str) -> ClusterAnswer | None:
        """The newest copy of a cluster, marked stale, for a request whose deadline passed
        while PCS was still being asked; None when there is none young enough to serve."""
        if self._settings.cache_max_stale_seconds <= 0:
            return None
        try:
            check_identifier(identifier)
        except InvalidIdentifier:
            return None
        answer = await self._stale_entry(self.key(identifier), "the request's deadline")
        if answer is not None:
            self._observer.looked_up("stale")
        return answer

    async def _stale_answer(self, key: str, exc: errors.PcsError) -> ClusterAnswer | None:
        if not exc.serve_stale or self._settings.cache_max_stale_seconds <= 0:
            return None
        return await self._stale_entry(key, type(exc).__name__)

    async def _stale_entry(self, key: str, why: str) -> ClusterAnswer | None:
        entry = await self._read(key)
        if entry is None or entry.wire is None:
            return None
        now = self._clock()
        if now - entry.fetched_at > self._settings.cache_max_stale_seconds:
            return None
        cluster = parse_cluster(entry.wire)
        self.stats.stale_answers += 1
        log.info("serving a stale value after %s", why)
        return ClusterAnswer(
            cluster, entry.fetched_at, entry.fetched_at + self.ttl(cluster), True, entry.request_id
        )

    async def _read(self, key: str) -> StoredEntry[Any] | None:
        raw = await self._store.get(key)
        return None if raw is None else StoredEntry.decode(raw)


def _retrieved(flight: asyncio.Task[ClusterAnswer]) -> None:
    """A background fetch's failure is its callers' to see (those that waited on it); with
    none, it is left here rather than reported as never retrieved."""
    if not flight.cancelled():
        flight.exception()


def _not_found(identifier: str, request_id: str | None) -> errors.ResourceNotFound:
    return errors.ResourceNotFound(
        "No cluster with this identifier exists.",
        aws_error_code="ResourceNotFoundException",
        request_id=request_id,
        resource_id=identifier,
        resource_type="cluster",
    )
