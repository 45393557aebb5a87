"""Queues, compute node groups, tags and list pages: cached as clusters are.

One engine, `ResourceCache`, holds what the cluster service does for clusters: a cache
key per resource (region and endpoint in it), freshness by status, negative caching,
stale-if-error marked stale, and one PCS call per key at once (single-flight). Resolvers
reach it through the region's services, never the PCS client.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, Generic, TypeVar

from gateway.config import Settings
from gateway.lru import LRU
from gateway.pcs import errors
from gateway.pcs.client import FetchedWire, PcsClient
from gateway.pcs.cluster import SETTLED_STATUSES
from gateway.pcs.compute_node_group import ComputeNodeGroup, parse_compute_node_group
from gateway.pcs.model import shapes
from gateway.pcs.queue import Queue, parse_queue
from gateway.pcs.summary import (
    ClusterSummary,
    ComputeNodeGroupSummary,
    Page,
    QueueSummary,
    Tags,
    parse_cluster_summary,
    parse_compute_node_group_summary,
    parse_page,
    parse_queue_summary,
    parse_tags,
)
from gateway.service.clusters import (
    KEY_VERSION,
    MAX_IDENTIFIER_LENGTH,
    InvalidIdentifier,
    StoredEntry,
    cancel_flights,
)
from gateway.service.observer import LookupObserver, NoLookupObserver
from gateway.service.store import CacheStore

log = logging.getLogger(__name__)

T = TypeVar("T")
S = TypeVar("S")


@dataclass(frozen=True, slots=True)
class Answer(Generic[T]):
    """A resource (or a page) with the facts about its freshness."""

    value: T
    #: Names this value in answer facts: kind, region and identity.
    key: str
    fetched_at: float
    fresh_until: float
    stale: bool
    request_id: str | None

    def age_seconds(self, now: float | None = None) -> float:
        """Seconds since PCS sent this value."""
        return max(0.0, (time.time() if now is None else now) - self.fetched_at)


@dataclass(frozen=True, slots=True)
class Kind(Generic[T]):
    """How one kind of value is read, how long it stays fresh, and what names it."""

    name: str
    parse: Callable[[Any], T]
    ttl: Callable[[T], float]
    #: When the value last changed, to compare with a newer summary; None: no such time.
    modified_at: Callable[[T], datetime | None]
    #: Other identities the value is found by (its id beside its name).
    aliases: Callable[[T], tuple[str, ...]]
    noun: str
    #: PCS's resourceType of a not-found answer about this kind.
    resource_type: str | None = None


class ResourceCache(Generic[T]):
    """Answers one kind of value from the cache or PCS, one PCS call per key at once."""

    def __init__(
        self,
        kind: Kind[T],
        client: PcsClient,
        store: CacheStore,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        observer: LookupObserver | None = None,
    ) -> None:
        self.kind = kind
        self._store = store
        self._settings = settings
        self._clock = clock
        self._observer = observer or NoLookupObserver()
        self._flights: dict[str, asyncio.Task[Answer[T]]] = {}
        # Answers kept in process while fresh: a request whose store read began before a
        # fetch landed finds that fetch's answer instead of calling PCS again.
        self._near: LRU[str, Answer[T]] = LRU(settings.cache_max_entries)
        self._region = client.region
        self._prefix = f"pcsgw:{KEY_VERSION}:{client.account}:{client.endpoint}:{kind.name}:"
        #: Calls made to PCS, for tests and metrics.
        self.upstream_calls = 0

    async def close(self) -> None:
        """Cancel the PCS calls still in flight."""
        await cancel_flights(self._flights.values())

    def _key(self, identity: str) -> str:
        return self._prefix + identity

    async def get(
        self,
        identity: str,
        fetch: Callable[[], Awaitable[FetchedWire]],
        *,
        scope: str = "",
        not_before: datetime | None = None,
    ) -> Answer[T]:
        """The value named `identity` (within `scope`, e.g. its cluster); raises PcsError.

        A cached value that changed before `not_before` (a newer summary's modifiedAt) is
        fetched again.
        """
        key = self._key(scope + identity)
        answer = await self._lookup(key, identity, not_before)
        if answer is not None:
            self._observer.looked_up("hit")
            return answer
        flight = self._flights.get(key)
        outcome = "coalesced"
        if flight is None:
            outcome = "miss"
            flight = asyncio.create_task(self._fetch(key, scope, identity, fetch))
            self._flights[key] = flight
            flight.add_done_callback(lambda _: self._flights.pop(key, None))
        try:
            # Shielded: a caller that gives up must not cancel the fetch others wait on.
            answer = await asyncio.shield(flight)
        except errors.PcsError as exc:
            self._observer.looked_up(outcome, exc.request_id)
            raise
        self._observer.looked_up("stale" if answer.stale else outcome, answer.request_id)
        return answer

    async def _lookup(
        self, key: str, identity: str, not_before: datetime | None
    ) -> Answer[T] | None:
        answer = self._near_answer(key, not_before)
        if answer is not None or key in self._flights:
            return answer
        with self._observer.reading(self._store.kind) as read:
            raw = await self._store.get(key)
            entry = None if raw is None else StoredEntry.decode(raw)
            try:
                if entry is not None:
                    answer = self._fresh(key, identity, entry, not_before)
            except errors.ResourceNotFound:
                self._observer.looked_up("negative_hit")
                read.found("negative_hit")
                raise
            answer = answer or self._near_answer(key, not_before)
            read.found("miss" if answer is None else "hit")
        return answer

    def _near_answer(self, key: str, not_before: datetime | None) -> Answer[T] | None:
        answer = self._near.get(key)
        if answer is None:
            return None
        if answer.fresh_until <= self._clock():
            self._near.pop(key)
            return None
        return None if self._outdated(answer.value, not_before) else answer

    def _outdated(self, value: T, not_before: datetime | None) -> bool:
        if not_before is None:
            return False
        changed = self.kind.modified_at(value)
        return changed is not None and changed < not_before

    def _fresh(
        self, key: str, identity: str, entry: StoredEntry[Any], not_before: datetime | None
    ) -> Answer[T] | None:
        now = self._clock()
        if entry.wire is None:
            if now - entry.fetched_at < self._settings.cache_negative_ttl_seconds:
                raise self._not_found(identity, entry.request_id)
            return None
        value = self.kind.parse(entry.wire)
        fresh_until = entry.fetched_at + self.kind.ttl(value)
        if now >= fresh_until or self._outdated(value, not_before):
            return None
        return Answer(
            value, self._name(key), entry.fetched_at, fresh_until, False, entry.request_id
        )

    def _name(self, key: str) -> str:
        return f"{self.kind.name}:{self._region}:{key.removeprefix(self._prefix)}"

    async def _fetch(
        self,
        key: str,
        scope: str,
        identity: str,
        fetch: Callable[[], Awaitable[FetchedWire]],
    ) -> Answer[T]:
        self.upstream_calls += 1
        try:
            fetched = await fetch()
        except errors.ResourceNotFound as exc:
            missing = StoredEntry(self._clock(), None, exc.request_id)
            ttl = self._settings.cache_negative_ttl_seconds
            await self._store.set_many([key], missing.encode(), ttl=ttl)
            raise
        except errors.PcsError as exc:
            stale = await self._stale(key, exc)
            if stale is None:
                raise
            return stale
        now = self._clock()
        value = self.kind.parse(fetched.wire)
        ttl = self.kind.ttl(value)
        keys = sorted({key, *(self._key(scope + alias) for alias in self.kind.aliases(value))})
        entry = StoredEntry(now, fetched.wire, fetched.request_id)
        await self._store.set_many(
            keys, entry.encode(), ttl=ttl + self._settings.cache_max_stale_seconds
        )
        answer = Answer(value, self._name(key), now, now + ttl, False, fetched.request_id)
        for each in keys:
            self._near.put(each, answer)
        return answer

    async def _stale(self, key: str, exc: errors.PcsError) -> Answer[T] | None:
        if not exc.serve_stale or self._settings.cache_max_stale_seconds <= 0:
            return None
        raw = await self._store.get(key)
        entry = None if raw is None else StoredEntry.decode(raw)
        if entry is None or entry.wire is None:
            return None
        if self._clock() - entry.fetched_at > self._settings.cache_max_stale_seconds:
            return None
        value = self.kind.parse(entry.wire)
        log.info("serving a stale %s after %s", self.kind.noun, type(exc).__name__)
        fresh_until = entry.fetched_at + self.kind.ttl(value)
        return Answer(value, self._name(key), entry.fetched_at, fresh_until, True, entry.request_id)

    def _not_found(self, identity: str, request_id: str | None) -> errors.ResourceNotFound:
        return errors.ResourceNotFound(
            f"No {self.kind.noun} with this identifier exists.",
            aws_error_code="ResourceNotFoundException",
            request_id=request_id,
            resource_id=identity[:MAX_IDENTIFIER_LENGTH],
            resource_type=self.kind.resource_type,
        )


@cache
def _pattern(shape: str) -> re.Pattern[str]:
    return re.compile(shapes()[shape]["pattern"])


def check_member_identifier(identifier: str, shape: str, noun: str) -> str:
    """A queue or node group name or id PCS could accept, else InvalidIdentifier."""
    if (
        not identifier
        or len(identifier) > MAX_IDENTIFIER_LENGTH
        or _pattern(shape).fullmatch(identifier) is None
    ):
        raise InvalidIdentifier(
            f"A {noun} identifier is its name (a letter, then letters, digits or hyphens) "
            f"or its id, at most {MAX_IDENTIFIER_LENGTH} characters."
        )
    return identifier


def _no_time(_: object) -> datetime | None:
    return None


def _no_aliases(_: object) -> tuple[str, ...]:
    return ()


def _ids(value: Queue | ComputeNodeGroup) -> tuple[str, ...]:
    return (value.name, value.id)


class ResourceServices:
    """One region's queues, compute node groups, tags and list pages."""

    def __init__(
        self,
        client: PcsClient,
        store: CacheStore,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        observer: LookupObserver | None = None,
    ) -> None:
        self._client = client

        def by_status(value: Queue | ComputeNodeGroup) -> float:
            if value.status in SETTLED_STATUSES:
                return settings.cache_ttl_settled_seconds
            return settings.cache_ttl_transitional_seconds

        def settled(_: object) -> float:
            return settings.cache_ttl_settled_seconds

        def briefly(_: object) -> float:
            return settings.list_cache_ttl_seconds

        def make(kind: Kind[T]) -> ResourceCache[T]:
            return ResourceCache(kind, client, store, settings, clock=clock, observer=observer)

        self.queues = make(Kind("queue", parse_queue, by_status, _modified, _ids, "queue", "queue"))
        self.compute_node_groups = make(
            Kind(
                "computenodegroup",
                parse_compute_node_group,
                by_status,
                _modified,
                _ids,
                "compute node group",
                "computeNodeGroup",
            )
        )
        self.tags = make(Kind("tags", parse_tags, settled, _no_time, _no_aliases, "resource"))
        self.cluster_pages: ResourceCache[Page[ClusterSummary]] = make(
            Kind(
                "clusters", _pages(parse_cluster_summary), briefly, _no_time, _no_aliases, "cluster"
            )
        )
        self.queue_pages: ResourceCache[Page[QueueSummary]] = make(
            Kind("queues", _pages(parse_queue_summary), briefly, _no_time, _no_aliases, "cluster")
        )
        self.compute_node_group_pages: ResourceCache[Page[ComputeNodeGroupSummary]] = make(
            Kind(
                "computenodegroups",
                _pages(parse_compute_node_group_summary),
                briefly,
                _no_time,
                _no_aliases,
                "cluster",
                "cluster",
            )
        )

    def all(self) -> tuple[ResourceCache[Any], ...]:
        """Every cache of the region, for closing and counting."""
        return (
            self.queues,
            self.compute_node_groups,
            self.tags,
            self.cluster_pages,
            self.queue_pages,
            self.compute_node_group_pages,
        )

    async def close(self) -> None:
        """Cancel the PCS calls still in flight."""
        for each in self.all():
            await each.close()

    async def queue(
        self, cluster: str, identifier: str, *, not_before: datetime | None = None
    ) -> Answer[Queue]:
        """A queue of a cluster by name or id; raises InvalidIdentifier or PcsError."""
        check_member_identifier(identifier, "QueueIdentifier", "queue")
        return await self.queues.get(
            identifier,
            lambda: self._client.get_queue(cluster, identifier),
            scope=f"{cluster}/",
            not_before=not_before,
        )

    async def compute_node_group(
        self, cluster: str, identifier: str, *, not_before: datetime | None = None
    ) -> Answer[ComputeNodeGroup]:
        """A compute node group of a cluster by name or id."""
        check_member_identifier(identifier, "ComputeNodeGroupIdentifier", "compute node group")
        return await self.compute_node_groups.get(
            identifier,
            lambda: self._client.get_compute_node_group(cluster, identifier),
            scope=f"{cluster}/",
            not_before=not_before,
        )

    async def tags_of(self, arn: str) -> Answer[Tags]:
        """The tags of a resource by ARN."""
        return await self.tags.get(arn, lambda: self._client.list_tags_for_resource(arn))

    async def cluster_page(self, token: str | None, size: int) -> Answer[Page[ClusterSummary]]:
        """A page of ListClusters, cached briefly by token and page size."""
        return await self.cluster_pages.get(
            _page_key(token, size),
            lambda: self._client.list_clusters(max_results=size, next_token=token),
        )

    async def queue_page(
        self, cluster: str, token: str | None, size: int
    ) -> Answer[Page[QueueSummary]]:
        """A page of a cluster's ListQueues."""
        return await self.queue_pages.get(
            _page_key(token, size),
            lambda: self._client.list_queues(cluster, max_results=size, next_token=token),
            scope=f"{cluster}/",
        )

    async def compute_node_group_page(
        self, cluster: str, token: str | None, size: int
    ) -> Answer[Page[ComputeNodeGroupSummary]]:
        """A page of a cluster's ListComputeNodeGroups."""
        return await self.compute_node_group_pages.get(
            _page_key(token, size),
            lambda: self._client.list_compute_node_groups(
                cluster, max_results=size, next_token=token
            ),
            scope=f"{cluster}/",
        )


def _modified(value: Queue | ComputeNodeGroup) -> datetime | None:
    return value.modified_at


def _page_key(token: str | None, size: int) -> str:
    # A token is PCS's, possibly long: its digest keeps the key short.
    digest = "first" if token is None else hashlib.sha256(token.encode()).hexdigest()[:32]
    return f"{size}/{digest}"


def _pages(parse: Callable[[Any], S]) -> Callable[[Any], Page[S]]:
    def read(wire: Any) -> Page[S]:
        return parse_page(wire, "items", parse)

    return read
