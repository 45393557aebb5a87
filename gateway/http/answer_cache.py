"""The answer cache: a repeated GraphQL operation answered with its encoded bytes.

A plain ASGI layer in front of Starlette. Its gate (`Gate`, the security gate in the
gateway) first authenticates the caller and spends from the caller's rate limit; a request
the gate does not admit passes on untouched and never meets a stored answer. A request for
`/graphql` whose method, query string, body and headers (credentials left out) were answered
before for a caller of the same authorization partition (`Caller.partition`: what field
authorization reads, never who the caller is), while every cluster in that answer is still
fresh, is answered with the stored status, headers and body: no routing, no Request object,
no GraphQL work. Anything else passes on, and its answer is stored on the way out when the
GraphQL layer marked it reusable (`RequestContext.facts`, see `AnswerFacts`).

What is never stored: answers with errors or extensions (a stale mark, for one), answers
that depend on the moment (`refresh`), operations other than queries, responses other
than 200 or that set a cookie, and requests the inner layers refused. An entry is keyed
on a digest of the request and the partition, never on the credential, and holds the
partition it was built for. Each replica keeps its own entries: their freshness is the
freshness of the cluster entries they were built from, so with Redis as the shared
cluster cache an answer is never older than the cluster cache of this process would serve.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from starlette.datastructures import State
from starlette.routing import Router
from starlette.types import Message, Receive, Scope, Send

from gateway.context import AnswerFacts, Caller, RequestContext
from gateway.graphql.ages import cut_ages, join_ages
from gateway.lru import LRU
from gateway.observe.request_id import REQUEST_ID_HEADER, request_id_of

#: Request headers that never change an answer: left out of the key so that, e.g., a
#: client's own request id does not make every request a miss.
IGNORED_REQUEST_HEADERS = frozenset(
    {
        b"content-length",
        b"connection",
        b"keep-alive",
        b"user-agent",
        b"referer",
        b"x-request-id",
        b"traceparent",
        b"tracestate",
    }
)
#: Credentials: with a gate, the caller's partition stands for them in the key.
CREDENTIAL_HEADERS = frozenset({b"authorization", b"x-api-key"})
_IGNORED_WITH_PARTITION = IGNORED_REQUEST_HEADERS | CREDENTIAL_HEADERS
#: Response headers made afresh for every request, never replayed from an entry.
PER_REQUEST_HEADERS = frozenset({b"content-length", b"date", b"server", b"x-request-id"})
CACHE_CONTROL_HEADER = b"cache-control"


@dataclass(slots=True)
class AnswerStats:
    """Counters of the answer cache."""

    hits: int = 0
    misses: int = 0
    stores: int = 0
    evictions: int = 0
    #: Reusable answers not stored (too large, ages not found in the bytes, outdated).
    refused: int = 0
    #: Requests that waited for another request rebuilding the same answer.
    waits: int = 0


@dataclass(slots=True)
class _Entry:
    status: int
    #: The headers in the order first sent; per-request ones are filled at the indexes below.
    headers: list[tuple[bytes, bytes]]
    length_at: int | None
    request_id_at: int | None
    #: A `max-age` restated at each answer: (index, the directive before it).
    cache_control: tuple[int, bytes] | None
    #: The body, cut where ages go: parts[0] age0 parts[1] age1 ... parts[n].
    parts: tuple[bytes, ...]
    ages: tuple[float, ...]
    clusters: tuple[tuple[str, float], ...]
    valid_until: float
    partition: str
    size: int
    #: The request context's note, handed back to the observers of each hit.
    note: str | None = None


#: Told of every answer served from the cache, once it has gone: (scope, status, seconds
#: spent, the request id it was sent with, the note kept with the entry).
HitObserver = Callable[[Scope, int, float, bytes, str | None], None]
#: Authenticates a request and spends from its caller's rate limit, in front of the cache:
#: the caller when the request may go on here, None to pass it on to the layers inside.
Gate = Callable[[Scope], Awaitable[Caller | None]]


class Inner(Protocol):
    """What the answer cache wraps: Starlette, or a layer in front of it that exposes its
    state and router."""

    @property
    def state(self) -> State: ...

    @property
    def router(self) -> Router: ...

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None: ...


class AnswerCache:
    """Answers repeated operations from memory; bounded in entries and in bytes."""

    def __init__(
        self,
        app: Inner,
        *,
        path: str = "/graphql",
        max_entries: int = 10_000,
        max_bytes: int = 64 * 1024 * 1024,
        max_body_bytes: int = 65_536,
        clock: Callable[[], float] = time.time,
        gate: Gate | None = None,
    ) -> None:
        self.app = app
        self.gate = gate
        self.path = path
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.max_body_bytes = max_body_bytes
        self.stats = AnswerStats()
        self.observers: list[HitObserver] = []
        self._clock = clock
        self._entries: LRU[bytes, _Entry] = LRU(max_entries, max_bytes=max_bytes, size=_size)
        # The answers being rebuilt, by key: requests for the same one wait for it.
        self._building: dict[bytes, asyncio.Event] = {}
        # Newest value (fetched_at) this process has seen of each cluster: an entry built
        # from an older one (before a refresh) is never served again.
        self._versions: dict[str, float] = {}
        self._versions_limit = max(4 * max_entries, 65_536)

    @property
    def state(self) -> State:
        """The wrapped application's state (`state.gateway` holds the long-lived parts)."""
        return self.app.state

    @property
    def router(self) -> Router:
        """The wrapped application's router (its lifespan among others)."""
        return self.app.router

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def held_bytes(self) -> int:
        """What the held answers take, about."""
        return self._entries.bytes

    def clear(self) -> None:
        """Forget every answer."""
        self._entries.clear()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != self.path
            or scope["method"] not in ("GET", "POST")
            or _streams(scope)
        ):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        partition = None
        if self.gate is not None:
            caller = await self.gate(scope)
            if caller is None:  # refused, over its budget or public: the inner layers answer
                await self.app(scope, receive, send)
                return
            partition = caller.partition
        if self.max_entries == 0:
            await self.app(scope, receive, send)
            return
        pending: list[Message] = []
        body = b""
        if scope["method"] == "POST":
            read = await self._read_body(receive, pending)
            if read is None:  # too large or cut short: the inner layers answer it
                await self.app(scope, _replay(pending, receive), send)
                return
            body = read
        key = self._key(scope, body, partition)
        entry = self._entries.get(key)
        if entry is not None and await self._serve(key, entry, partition, scope, send, started):
            return
        building = self._building.get(key)
        if building is not None:
            # Another request is rebuilding this answer: wait for it rather than build it
            # again, and build it here only when it was not kept after all.
            self.stats.waits += 1
            await building.wait()
            entry = self._entries.get(key)
            if entry is not None and await self._serve(key, entry, partition, scope, send, started):
                return
        self.stats.misses += 1
        if entry is None or building is not None:
            # Never kept, or not since: built alongside any other request, as it comes.
            await self._pass_on(key, scope, _replay(pending, receive), send)
            return
        # The entry held was outdated (its clusters refreshed, or it expired): after a
        # refresh every connection's next request misses at once, and they wait for this one.
        building = self._building[key] = asyncio.Event()
        try:
            await self._pass_on(key, scope, _replay(pending, receive), send)
        finally:
            del self._building[key]
            building.set()

    async def _serve(
        self,
        key: bytes,
        entry: _Entry,
        partition: str | None,
        scope: Scope,
        send: Send,
        started: float,
    ) -> bool:
        """Answer with `entry` when it may serve this request, else forget it; whether it did."""
        now = self._clock()
        if not (
            now < entry.valid_until
            and self._current(entry)
            and (partition is None or entry.partition == partition)
        ):
            self._entries.pop(key)
            return False
        self.stats.hits += 1
        # No request context is made on a hit: what observers need is passed to them.
        request_id = request_id_of(scope)
        await self._answer(entry, send, now, request_id)
        if self.observers:
            elapsed = time.perf_counter() - started
            for observer in self.observers:
                observer(scope, entry.status, elapsed, request_id, entry.note)
        return True

    async def _read_body(self, receive: Receive, pending: list[Message]) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            pending.append(message)
            if message["type"] != "http.request":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        # The inner layers read the body as one message, the way it was answered before.
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        pending[:] = [{"type": "http.request", "body": body, "more_body": False}]
        return body

    @staticmethod
    def _key(scope: Scope, body: bytes, partition: str | None) -> bytes:
        # Headers cannot hold a newline, so the blank line ends them as in HTTP itself.
        digest = hashlib.sha256(b"%s\n" % (partition or "").encode())
        digest.update(
            b"%s %s?%s\n"
            % (scope["method"].encode(), scope["path"].encode(), scope["query_string"])
        )
        ignored = IGNORED_REQUEST_HEADERS if partition is None else _IGNORED_WITH_PARTITION
        for name, value in scope["headers"]:
            if name not in ignored:
                digest.update(b"%s:%s\n" % (name, value))
        digest.update(b"\n")
        digest.update(body)
        return digest.digest()

    def _current(self, entry: _Entry) -> bool:
        versions = self._versions
        for cluster_id, fetched_at in entry.clusters:
            if versions.get(cluster_id) != fetched_at:
                return False
        return True

    async def _answer(self, entry: _Entry, send: Send, now: float, request_id: bytes) -> None:
        headers = entry.headers
        if entry.ages:
            body = join_ages(entry.parts, [max(0.0, now - at) for at in entry.ages])
        else:
            body = entry.parts[0]
        if (
            entry.length_at is not None
            or entry.request_id_at is not None
            or entry.cache_control is not None
        ):
            headers = headers.copy()
            if entry.length_at is not None:
                headers[entry.length_at] = (b"content-length", b"%d" % len(body))
            if entry.request_id_at is not None:
                headers[entry.request_id_at] = (REQUEST_ID_HEADER, request_id)
            if entry.cache_control is not None:
                at, directive = entry.cache_control
                max_age = max(0, int(entry.valid_until - now))
                headers[at] = (CACHE_CONTROL_HEADER, b"%s, max-age=%d" % (directive, max_age))
        await send({"type": "http.response.start", "status": entry.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _pass_on(self, key: bytes, scope: Scope, receive: Receive, send: Send) -> None:
        status = 0
        headers: list[tuple[bytes, bytes]] = []
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal status, headers
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        await self.app(scope, receive, capture)
        context = RequestContext.of(scope)
        facts = context.facts
        if facts is None:
            return
        if not self._learn(facts) or not facts.reusable or status != 200:
            return
        self._store(key, status, headers, b"".join(chunks), facts, context.caller, context.note)

    def _learn(self, facts: AnswerFacts) -> bool:
        """Record the cluster versions in an answer; False when one is already outdated."""
        versions = self._versions
        current = True
        for cluster_id, fetched_at in facts.resources.items():
            known = versions.get(cluster_id)
            if known is None or fetched_at > known:
                if known is None and len(versions) >= self._versions_limit:
                    # Entries whose versions are forgotten turn into misses and rebuild.
                    versions.clear()
                versions[cluster_id] = fetched_at
            elif fetched_at < known:
                current = False
        return current

    def _store(
        self,
        key: bytes,
        status: int,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        facts: AnswerFacts,
        caller: Caller | None,
        note: str | None = None,
    ) -> None:
        now = self._clock()
        # With a gate every request is authenticated again; without one the entry may not
        # outlive the credential it was keyed on.
        expires_at = None if caller is None or self.gate is not None else caller.expires_at
        valid_until = min(facts.fresh_until, math.inf if expires_at is None else expires_at)
        names = {name for name, _ in headers}
        if valid_until <= now or b"set-cookie" in names:
            return
        cut = cut_ages(body, facts.ages)
        if cut is None:
            self.stats.refused += 1
            return
        parts, ages = cut
        # Kept in the order sent; content-length is restated only when ages change the body.
        kept: list[tuple[bytes, bytes]] = []
        length_at = request_id_at = None
        cache_control = None
        for name, value in headers:
            if name == b"content-length":
                if ages:
                    length_at = len(kept)
                kept.append((name, value) if not ages else (name, b""))
            elif name == REQUEST_ID_HEADER:
                request_id_at = len(kept)
                kept.append((name, b""))
            elif name == CACHE_CONTROL_HEADER and b"max-age=" in value:
                cache_control = (len(kept), value.partition(b",")[0])
                kept.append((name, value))
            elif name not in PER_REQUEST_HEADERS:
                kept.append((name, value))
        entry = _Entry(
            status=status,
            headers=kept,
            length_at=length_at,
            request_id_at=request_id_at,
            cache_control=cache_control,
            parts=parts,
            ages=ages,
            clusters=tuple(facts.resources.items()),
            valid_until=valid_until,
            partition="" if caller is None else caller.partition,
            size=0,
            note=note,
        )
        entry.size = footprint(key, entry)
        if entry.size > self.max_bytes // 8:
            self.stats.refused += 1
            return
        self.stats.evictions += self._entries.put(key, entry)
        self.stats.stores += 1


def _size(entry: _Entry) -> int:
    return entry.size


#: What the bounded map spends on one more key beyond the key object itself: a slot of its
#: dict (index, hash, key and value pointers, at the table's load factor) and a link of the
#: OrderedDict's order list.
MAP_ENTRY_BYTES = 120
_FLOAT_BYTES = sys.getsizeof(1.0)


def footprint(key: bytes, entry: _Entry) -> int:
    """The bytes one stored answer holds in memory, its key and every object it keeps.

    Counted object by object with `sys.getsizeof` (headers as tuples of bytes, the body's
    parts, ages, resource versions, the entry itself), so the byte cap bounds what the
    process really holds; objects shared with other entries are counted in each.
    """
    size = sys.getsizeof(key) + sys.getsizeof(entry) + MAP_ENTRY_BYTES
    size += sys.getsizeof(entry.headers)
    for name, value in entry.headers:
        size += sys.getsizeof((name, value)) + sys.getsizeof(name) + sys.getsizeof(value)
    size += sys.getsizeof(entry.parts) + sum(sys.getsizeof(part) for part in entry.parts)
    size += sys.getsizeof(entry.ages) + _FLOAT_BYTES * len(entry.ages)
    size += sys.getsizeof(entry.clusters)
    for resource, _ in entry.clusters:
        size += sys.getsizeof((resource, 0.0)) + sys.getsizeof(resource) + _FLOAT_BYTES
    size += sys.getsizeof(entry.partition) + _FLOAT_BYTES  # valid_until
    if entry.cache_control is not None:
        size += sys.getsizeof(entry.cache_control) + sys.getsizeof(entry.cache_control[1])
    if entry.note is not None:
        size += sys.getsizeof(entry.note)
    return size


def _replay(pending: list[Message], receive: Receive) -> Receive:
    """A receive that gives the messages already read, then the client's own."""
    if not pending:
        return receive
    queue = list(pending)

    async def replayed() -> Message:
        if queue:
            return queue.pop(0)
        return await receive()

    return replayed


def answer_families(cache: AnswerCache) -> Iterator[Metric]:
    """The answer cache's counters and size, read at scrape."""
    for name, help_text in (
        ("hits", "Requests answered from the answer cache."),
        ("misses", "Cacheable requests that went on to GraphQL."),
        ("stores", "Answers stored for reuse."),
        ("evictions", "Answers evicted by the entry or byte bound."),
        ("refused", "Reusable answers not stored (too large or ambiguous)."),
        ("waits", "Requests that waited for another request rebuilding the same answer."),
    ):
        family = CounterMetricFamily(f"pcsgw_answer_cache_{name}", help_text)
        family.add_metric([], getattr(cache.stats, name))
        yield family
    entries = GaugeMetricFamily("pcsgw_answer_cache_entries", "Answers held.")
    entries.add_metric([], len(cache))
    yield entries
    held = GaugeMetricFamily("pcsgw_answer_cache_bytes", "Bytes the held answers take, about.")
    held.add_metric([], cache.held_bytes)
    yield held


def _streams(scope: Scope) -> bool:
    """A subscription over SSE: a stream, never an answer to keep."""
    for name, value in scope["headers"]:  # a loop, not any(): read for every request
        if name == b"accept" and b"text/event-stream" in value:
            return True
    return False
