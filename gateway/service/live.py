"""Live status: one poller per (region, cluster) in a process, its changes fanned out.

PCS has no events, so the gateway polls: one `Watch` per (region, cluster) however many
subscribe, through the cluster service (cache, rate budget, breaker), at an interval by
status class. With Redis, one replica leads each cluster's poll (a lease) and publishes
what changed; the others deliver those events to their own subscribers. Each subscriber
gets the cluster now, then one event per change of any field's value.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import Counter
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field

import orjson
from redis.exceptions import RedisError

from gateway.config import Settings
from gateway.coordination.changes import ChangeChannels
from gateway.coordination.lease import Lease, Leases
from gateway.pcs import errors
from gateway.service.clusters import ClusterAnswer, ClusterService, check_identifier

log = logging.getLogger(__name__)

#: Keys of the poll leases in Redis; the PCS endpoint (with region) and identifier follow.
POLL_LEASE_PREFIX = "pcsgw:lease:live:"
#: A poll starts this long after the cached value stops being fresh, so it asks PCS.
POLL_MARGIN_SECONDS = 0.01


class SubscriptionLimit(Exception):
    """A subscription over a limit, or made while the gateway stops; the message says which."""


class TokenExpired(Exception):
    """The credential a subscription was made with has expired."""


class SlowConsumer(Exception):
    """A subscriber fell behind by more events than its send queue holds."""


class Ended(Exception):
    """The gateway is stopping: the subscription completes."""


@dataclass
class LiveStats:
    """Counters of live status, read by the metrics collector at scrape time."""

    subscriptions: int = 0
    polls: int = 0
    events: int = 0
    published: int = 0
    slow_consumers: int = 0


_Event = ClusterAnswer | errors.ResourceNotFound | SlowConsumer | Ended


class _Subscriber:
    """One subscription's queue of events, bounded."""

    __slots__ = ("queue",)

    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[_Event] = asyncio.Queue(size + 1)

    def offer(self, event: _Event) -> bool:
        """Queue an event; False when the subscriber is too far behind (it is then ended)."""
        queue = self.queue
        if queue.qsize() >= queue.maxsize - 1:
            while not queue.empty():
                queue.get_nowait()
            queue.put_nowait(SlowConsumer())
            return False
        queue.put_nowait(event)
        return True


@dataclass(eq=False)
class Watch:
    """The poll of one cluster in one region, shared by its subscribers in this process."""

    hub: LiveStatus
    region: str
    identifier: str
    service: ClusterService
    last: ClusterAnswer
    subscribers: set[_Subscriber] = field(default_factory=set)
    task: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        """The watch's channel name: PCS endpoint (with region) and identifier."""
        return self.service.key(self.identifier)

    def deliver(self, event: ClusterAnswer | errors.ResourceNotFound) -> None:
        """Hand a change (or the cluster's end) to every subscriber, once per value."""
        if isinstance(event, ClusterAnswer):
            if event.cluster == self.last.cluster:
                return
            if event.fetched_at < self.last.fetched_at:
                return  # an older value arriving late from another replica
            self.last = event
        for subscriber in list(self.subscribers):
            if not subscriber.offer(event):
                self.hub.stats.slow_consumers += 1

    async def run(self) -> None:
        """Poll while anyone subscribes, leading the poll across replicas when Redis is there."""
        hub = self.hub
        settings = hub.settings
        lease = None
        if hub.leases is not None:
            lease = hub.leases.lease(POLL_LEASE_PREFIX + self.name, settings.live_lease_seconds)
        next_poll = self._next_poll(self.last)
        leading = False
        try:
            while self.subscribers:
                was_leading = leading
                leading = await self._lead(lease)
                if leading and not was_leading:
                    next_poll = min(next_poll, time.time())  # take over without waiting
                if leading and time.time() >= next_poll:
                    try:
                        answer = await self._poll()
                    except Exception:
                        log.exception("poll of %s failed unexpectedly", self.identifier)
                        answer = None
                    next_poll = self._next_poll(answer or self.last)
                tick = next_poll - time.time()
                if lease is not None:
                    tick = min(tick, settings.live_lease_seconds / 3)
                await asyncio.sleep(max(tick, POLL_MARGIN_SECONDS))
        finally:
            hub.forget(self)
            if lease is not None and leading:
                with contextlib.suppress(RedisError, OSError):
                    await lease.release()

    @staticmethod
    async def _lead(lease: Lease | None) -> bool:
        if lease is None:
            return True
        try:
            return await lease.hold()
        except (RedisError, OSError):
            return True  # Redis unreachable: every replica polls for itself

    def _next_poll(self, answer: ClusterAnswer) -> float:
        """When to poll next: after the interval, or once the cached value goes stale."""
        settings = self.hub.settings
        now = time.time()
        interval = settings.live_poll_seconds(settled=answer.cluster.settled)
        if now < answer.fresh_until < now + interval:
            return answer.fresh_until + POLL_MARGIN_SECONDS
        return now + interval

    async def _poll(self) -> ClusterAnswer | None:
        hub = self.hub
        hub.stats.polls += 1
        try:
            answer = await self.service.get(self.identifier)
        except errors.ResourceNotFound as exc:
            await hub.publish(self, exc)
            return None
        except errors.PcsError:
            return None  # a failed poll sends nothing; the next event's age tells
        if answer.stale:
            return None
        if answer.cluster != self.last.cluster and answer.fetched_at >= self.last.fetched_at:
            await hub.publish(self, answer)
        return answer


class LiveStatus:
    """The pollers of this process, and the subscriptions they feed."""

    def __init__(
        self,
        settings: Settings,
        *,
        channels: ChangeChannels | None = None,
        leases: Leases | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.channels = channels
        self.leases = leases
        self._clock = clock
        self.stats = LiveStats()
        self.watches: dict[tuple[str, str], Watch] = {}
        self.by_caller: Counter[str] = Counter()
        self.closed = False

    @property
    def pollers(self) -> int:
        """Clusters polled (or followed) by this process now."""
        return len(self.watches)

    @property
    def shared(self) -> bool:
        """Whether replicas share the polls now (Redis reachable)."""
        return self.channels is not None and self.channels.connected

    async def updates(
        self,
        service: ClusterService,
        region: str,
        identifier: str,
        *,
        caller: str = "",
        expires_at: float | None = None,
    ) -> AsyncGenerator[ClusterAnswer, None]:
        """The cluster now, then each change; a PcsError (NOT_FOUND: the cluster is gone) ends it.

        `caller` counts against the per-caller limit (SubscriptionLimit); past `expires_at`
        (Unix time) the stream raises TokenExpired; behind by a full queue, SlowConsumer.
        """
        check_identifier(identifier)
        if self.closed:
            raise SubscriptionLimit("The gateway is stopping; subscribe again shortly.")
        limit = self.settings.live_max_subscriptions_per_caller
        if self.by_caller[caller] >= limit:
            raise SubscriptionLimit(f"A caller may hold at most {limit} subscriptions at once.")
        self.by_caller[caller] += 1
        self.stats.subscriptions += 1
        subscriber = _Subscriber(self.settings.live_send_queue)
        watch: Watch | None = None
        try:
            first = await service.get(identifier)
            watch = self._join(service, region, identifier, subscriber, first)
            sent = first
            self.stats.events += 1
            yield first
            while True:
                event = await self._next(subscriber, expires_at)
                if isinstance(event, errors.ResourceNotFound | SlowConsumer):
                    raise event
                if isinstance(event, Ended):
                    return
                if event.cluster == sent.cluster:
                    continue
                sent = event
                self.stats.events += 1
                yield event
        finally:
            self.stats.subscriptions -= 1
            self.by_caller[caller] -= 1
            if self.by_caller[caller] <= 0:
                del self.by_caller[caller]
            if watch is not None:
                watch.subscribers.discard(subscriber)

    async def _next(self, subscriber: _Subscriber, expires_at: float | None) -> _Event:
        if expires_at is None:
            return await subscriber.queue.get()
        try:
            async with asyncio.timeout(max(0.0, expires_at - self._clock())):
                return await subscriber.queue.get()
        except TimeoutError:
            raise TokenExpired(
                "The token this subscription was made with has expired; subscribe again "
                "with a new one."
            ) from None

    def _join(
        self,
        service: ClusterService,
        region: str,
        identifier: str,
        subscriber: _Subscriber,
        first: ClusterAnswer,
    ) -> Watch:
        key = (region, identifier)
        watch = self.watches.get(key)
        if watch is None:
            watch = Watch(self, region, identifier, service, first)
            self.watches[key] = watch
            watch.subscribers.add(subscriber)
            if self.channels is not None:
                self.channels.listeners[watch.name] = functools.partial(self._received, watch)
            watch.task = asyncio.create_task(watch.run())
        else:
            watch.subscribers.add(subscriber)
            if watch.last.fetched_at > first.fetched_at and watch.last.cluster != first.cluster:
                subscriber.offer(watch.last)  # the watch knows a newer value than the cache
            else:
                watch.deliver(first)  # a newer value is news for those subscribed before
        return watch

    def forget(self, watch: Watch) -> None:
        """Drop a watch whose subscribers have all left."""
        if self.watches.get((watch.region, watch.identifier)) is watch:
            del self.watches[(watch.region, watch.identifier)]
        if self.channels is not None:
            self.channels.listeners.pop(watch.name, None)

    async def publish(self, watch: Watch, event: ClusterAnswer | errors.ResourceNotFound) -> None:
        """Deliver a change here, and to the other replicas through Redis."""
        watch.deliver(event)
        if self.channels is None:
            return
        if isinstance(event, ClusterAnswer):
            if event.wire is None:
                return
            body = {"t": event.fetched_at, "c": event.wire, "r": event.request_id}
        else:
            body = {"gone": True, "r": event.request_id}
        if await self.channels.publish(watch.name, orjson.dumps(body)):
            self.stats.published += 1

    def _received(self, watch: Watch, raw: bytes) -> None:
        try:
            body = orjson.loads(raw)
            if body.get("gone"):
                event: ClusterAnswer | errors.ResourceNotFound = errors.ResourceNotFound(
                    "No cluster with this identifier exists.",
                    aws_error_code="ResourceNotFoundException",
                    request_id=body.get("r"),
                    resource_id=watch.identifier,
                    resource_type="cluster",
                )
            else:
                event = watch.service.answer_of(body["c"], float(body["t"]), body.get("r"))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            log.warning("ignored a change event that does not parse")
            return
        watch.deliver(event)

    async def close(self) -> None:
        """Complete every subscription and stop every poll (the gateway is stopping)."""
        self.closed = True
        tasks = []
        for watch in list(self.watches.values()):
            for subscriber in list(watch.subscribers):
                with contextlib.suppress(asyncio.QueueFull):
                    subscriber.queue.put_nowait(Ended())
            watch.subscribers.clear()
            if watch.task is not None:
                watch.task.cancel()
                tasks.append(watch.task)
        await asyncio.gather(*tasks, return_exceptions=True)
