"""The per-caller rate limit: how many requests one caller may send on to GraphQL execution.

A plain ASGI layer behind authentication. It counts requests to `/graphql` by caller (the
API key or token subject, else the client address behind the trusted proxies) with the
`limits` library, in memory or in Redis when the cache is Redis (one budget for every
replica). Answers the answer cache serves never get here: they cost no execution and no
PCS call; each operation on a WebSocket spends the same budget (`CallerLimit`). Over the
budget: HTTP 429 with Retry-After and a `THROTTLED` error. When the
storage fails, requests pass (logged): the limit protects capacity, it is not a credential.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time

from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio import BlockingConnectionPool
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.config import Settings
from gateway.context import Caller, RequestContext
from gateway.http.refusal import send_refusal

log = logging.getLogger(__name__)

KEY_PREFIX = "pcsgw:v1:quota"


def client_address(scope: Scope, trusted_proxies: int) -> str:
    """The client's address: the peer, or the address the outermost trusted proxy saw.

    Each trusted proxy appends the address it got the request from to X-Forwarded-For, so the
    client is the `trusted_proxies`-th entry from the right; entries left of it are the
    client's own claims and never trusted.
    """
    peer = scope.get("client")
    address = str(peer[0]) if peer else "unknown"
    if trusted_proxies <= 0:
        return address
    forwarded: list[str] = []
    for name, value in scope["headers"]:
        if name == b"x-forwarded-for":
            forwarded += [part.strip() for part in value.decode("latin-1").split(",")]
    forwarded = [part for part in forwarded if part]
    if not forwarded:
        return address
    return forwarded[-min(trusted_proxies, len(forwarded))]


def make_storage(settings: Settings) -> Storage:
    """Redis when the cache is Redis (shared by the replicas), else this process's memory."""
    url = settings.cache_url
    if url.startswith(("redis://", "rediss://")):
        # A bounded pool whose callers wait for a free connection, as the cache's own does:
        # the library's default pool refuses the 101st concurrent request outright.
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=settings.cache_max_connections,
            timeout=settings.cache_timeout_seconds,
            socket_timeout=settings.cache_timeout_seconds,
            socket_connect_timeout=settings.cache_timeout_seconds,
        )
        return RedisStorage(
            f"async+{url}",
            implementation="redispy",
            key_prefix=KEY_PREFIX,
            connection_pool=pool,  # type: ignore[arg-type]  # passed on to redis.asyncio.Redis
        )
    return MemoryStorage()


class CallerLimit:
    """One budget per caller: spent by each request to GraphQL and each WebSocket operation."""

    def __init__(self, settings: Settings) -> None:
        self.trusted_proxies = settings.trusted_proxies
        self.timeout = settings.cache_timeout_seconds
        self.items: list[RateLimitItem] = (
            parse_many(settings.rate_limit) if settings.rate_limit else []
        )
        self.limiter = MovingWindowRateLimiter(make_storage(settings)) if self.items else None
        self._warned = 0.0

    @property
    def enabled(self) -> bool:
        """Whether a limit is configured."""
        return self.limiter is not None

    async def spend(self, scope: Scope, caller: Caller) -> int | None:
        """Spend one of the caller's budget: None when it may pass, else seconds to wait."""
        if self.limiter is None:
            return None
        who = caller.subject or f"addr:{client_address(scope, self.trusted_proxies)}"
        try:
            async with asyncio.timeout(self.timeout * 4):
                for item in self.items:
                    if not await self.limiter.hit(item, who):
                        stats = await self.limiter.get_window_stats(item, who)
                        return max(1, math.ceil(stats.reset_time - time.time()))
        except Exception as exc:  # the storage failed: let the request pass
            now = time.monotonic()
            if now - self._warned > 60:
                self._warned = now
                log.warning("rate limit storage failed, requests pass: %s", type(exc).__name__)
        return None


class CallerQuota:
    """Refuses a caller's requests to GraphQL past its budget with 429 and Retry-After."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        settings: Settings,
        limit: CallerLimit | None = None,
        path: str = "/graphql",
    ) -> None:
        self.app = app
        self.path = path
        self.limit = limit if limit is not None else CallerLimit(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            not self.limit.enabled
            or scope["type"] not in ("http", "websocket")
            or scope["path"] != self.path
        ):
            await self.app(scope, receive, send)
            return
        caller = RequestContext.of(scope).caller
        if caller is None:  # a public request (GraphiQL's page): nothing executes
            await self.app(scope, receive, send)
            return
        retry_after = await self.limit.spend(scope, caller)
        if retry_after is None:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1013})
            return
        await _refuse(send, retry_after)


async def _refuse(send: Send, retry_after: int) -> None:
    await send_refusal(
        send,
        429,
        "THROTTLED",
        "Too many requests from this caller; retry later.",
        headers=[(b"retry-after", b"%d" % retry_after)],
        retryAfterSeconds=retry_after,
    )
