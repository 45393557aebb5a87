"""The cache store under the cluster service: aiocache memory (bounded) or Redis.

The store never raises: a failing or slow backend reads as a miss and writes are dropped,
so a cache outage costs upstream calls, never answers. It reports itself degraded meanwhile.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from aiocache import RedisCache, SimpleMemoryCache
from aiocache.base import BaseCache
from aiocache.serializers import NullSerializer
from redis.asyncio import BlockingConnectionPool

from gateway.config import Settings
from gateway.lru import LRU

log = logging.getLogger(__name__)


@dataclass
class CacheStats:
    """Counters of the cluster cache, read by the metrics collector at scrape time."""

    hits: int = 0
    misses: int = 0
    stale_answers: int = 0
    coalesced_waits: int = 0
    #: Fetches started in the background for a hot cluster near the end of its freshness.
    refreshes_ahead: int = 0
    negative_hits: int = 0
    upstream_calls: int = 0
    evictions: int = 0
    errors: int = 0


class BytesSerializer(NullSerializer):  # type: ignore[misc]
    """Values are bytes both ways: no encoding on read, so Redis hands back what was stored."""

    DEFAULT_ENCODING = None


class BoundedMemoryCache(SimpleMemoryCache):  # type: ignore[misc]
    """aiocache's memory backend with a bound on entries; the least recently used go first.

    Expiry is kept beside each value and checked on read, so no timer is held per entry.
    """

    NAME = "memory"

    def __init__(self, *, max_entries: int, stats: CacheStats, **kwargs: Any) -> None:
        super().__init__(serializer=NullSerializer(), **kwargs)
        self.max_entries = max_entries
        self._stats = stats
        self._entries: LRU[str, tuple[float | None, Any]] = LRU(max_entries)

    def __len__(self) -> int:
        return len(self._entries)

    async def _get(self, key: str, encoding: str = "utf-8", _conn: Any = None) -> Any:
        found = self._entries.get(key)
        if found is None:
            return None
        expires, value = found
        if expires is not None and expires <= time.monotonic():
            self._entries.pop(key)
            return None
        return value

    async def _multi_get(self, keys: list[str], encoding: str = "utf-8", _conn: Any = None) -> Any:
        return [await self._get(key) for key in keys]

    async def _set(
        self,
        key: str,
        value: Any,
        ttl: float | None = None,
        _cas_token: Any = None,
        _conn: Any = None,
    ) -> bool:
        expires = time.monotonic() + ttl if ttl else None
        self._stats.evictions += self._entries.put(key, (expires, value))
        return True

    async def _multi_set(
        self, pairs: list[tuple[str, Any]], ttl: float | None = None, _conn: Any = None
    ) -> bool:
        for key, value in pairs:
            await self._set(key, value, ttl=ttl)
        return True

    async def _exists(self, key: str, _conn: Any = None) -> bool:
        return await self._get(key) is not None

    async def _delete(self, key: str, _conn: Any = None) -> int:
        return 1 if self._entries.pop(key) is not None else 0

    async def _clear(self, namespace: str | None = None, _conn: Any = None) -> bool:
        if namespace:
            for key in [k for k in self._entries if k.startswith(namespace)]:
                self._entries.pop(key)
        else:
            self._entries.clear()
        return True


def make_backend(settings: Settings, stats: CacheStats) -> BaseCache:
    """The aiocache backend named by `cache_url`."""
    url = urlsplit(settings.cache_url)
    if url.scheme == "memory":
        return BoundedMemoryCache(max_entries=settings.cache_max_entries, stats=stats, timeout=None)
    query = parse_qs(url.query)
    pool_kwargs: dict[str, Any] = {
        "socket_timeout": settings.cache_timeout_seconds,
        # How long a request waits for a free connection before reading as a miss.
        "timeout": settings.cache_timeout_seconds,
    }
    if url.username:
        pool_kwargs["username"] = unquote(url.username)
    if url.scheme == "rediss" and "ssl_ca_certs" in query:
        pool_kwargs["ssl_ca_certs"] = query["ssl_ca_certs"][0]
    db = url.path.strip("/") or "0"
    return RedisCache(
        serializer=BytesSerializer(),
        endpoint=url.hostname or "127.0.0.1",
        port=url.port or 6379,
        db=int(db),
        password=unquote(url.password) if url.password else None,
        ssl=url.scheme == "rediss",
        create_connection_timeout=settings.cache_timeout_seconds,
        # A burst waits for one of a bounded set of connections instead of opening hundreds.
        connection_pool_class=BlockingConnectionPool,
        pool_max_size=settings.cache_max_connections,
        connection_pool_kwargs=pool_kwargs,
        timeout=settings.cache_timeout_seconds,
    )


def describe(settings: Settings) -> str:
    """The backend's name and address for logs: never the password."""
    url = urlsplit(settings.cache_url)
    if url.scheme == "memory":
        return f"memory (max {settings.cache_max_entries} entries)"
    return f"{url.scheme}://{url.hostname}:{url.port or 6379}{url.path or '/0'}"


class CacheStore:
    """Bytes by key with a TTL, over an aiocache backend; failures read as misses."""

    #: How long after a failure the store still reports itself degraded.
    DEGRADED_FOR_SECONDS = 5.0

    def __init__(self, backend: BaseCache, *, name: str, stats: CacheStats) -> None:
        self.backend = backend
        self.name = name
        self._stats = stats
        self._failed_at: float | None = None

    @property
    def kind(self) -> str:
        """memory or redis: the metrics label of the backend."""
        return "memory" if isinstance(self.backend, BoundedMemoryCache) else "redis"

    @property
    def degraded(self) -> bool:
        """True while the backend has failed recently."""
        return (
            self._failed_at is not None
            and time.monotonic() - self._failed_at < self.DEGRADED_FOR_SECONDS
        )

    async def get(self, key: str) -> bytes | None:
        """The value, or None when absent, expired or the backend failed."""
        try:
            value = await self.backend.get(key)
        except Exception as exc:
            self._failed("get", exc)
            return None
        return value if isinstance(value, bytes) else None

    async def set_many(self, keys: list[str], value: bytes, ttl: float) -> None:
        """Store one value under several keys; a failure is logged and dropped."""
        try:
            await self.backend.multi_set([(key, value) for key in keys], ttl=ttl)
        except Exception as exc:
            self._failed("set", exc)

    async def add_within(self, key: str, amount: int, limit: int, ttl: int) -> bool:
        """Add `amount` to a counter that lives `ttl` seconds from its first add, unless that
        takes it past `limit`; False, nothing added, then or when the backend fails."""
        try:
            total = int(await self.backend.increment(key, amount))
            if total == amount:
                await self.backend.expire(key, ttl)
            if total > limit:
                await self.backend.increment(key, -amount)
                return False
        except Exception as exc:
            self._failed("increment", exc)
            return False
        return True

    async def ping(self) -> bool:
        """True when the backend answers now; clears the degraded state when it does."""
        if isinstance(self.backend, BoundedMemoryCache):
            return True
        try:
            await self.backend.exists("pcsgw:ping")
        except Exception as exc:
            self._failed("ping", exc)
            return False
        self._failed_at = None
        return True

    async def close(self) -> None:
        """Close the backend's connections."""
        try:
            await self.backend.close()
        except Exception as exc:
            log.warning("cache close failed: %s", type(exc).__name__)

    def _failed(self, operation: str, exc: BaseException) -> None:
        self._stats.errors += 1
        if not self.degraded:
            log.warning(
                "cache %s failed on %s: %s; answering from PCS meanwhile",
                operation,
                self.name,
                type(exc).__name__,
            )
        self._failed_at = time.monotonic()
