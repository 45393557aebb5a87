"""The per-caller rate limit: how many requests one caller may send to `/graphql`.

`CallerLimit` counts requests by caller (the API key or token subject, else the client
address behind the trusted proxies) in moving windows: in Redis with the `limits` library
when the cache is Redis (one budget for every replica), else in this process's memory
(`MovingWindows`). The fast lane's gate spends from it for
every request in front of the answer cache, answered from the cache or not; each operation
on a WebSocket spends the same budget. `CallerQuota`, a plain ASGI layer behind
authentication, refuses what the gate found over the budget and counts what the gate does
not see (WebSocket handshakes). Over the budget: HTTP 429 with Retry-After and a
`THROTTLED` error. When the storage fails, requests pass (logged): the limit protects
capacity, it is not a credential.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable

from limits import RateLimitItem, parse_many
from limits.aio.storage import RedisStorage
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


def make_storage(settings: Settings) -> RedisStorage:
    """The Redis storage of the shared budget, for a cache URL that is Redis."""
    url = settings.cache_url
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


class MovingWindows:
    """Moving windows in this process's memory: each caller's hits within each limit's window.

    The moving window of `limits`, without its per-key locks, entry objects and expiry task
    (which hops to a thread for every key it looks at): a hit is allowed while fewer than
    `amount` hits of the caller fall within the last `expiry` seconds, and then counted; a
    hit `expiry` seconds old has left, so a client that waits its Retry-After gets in.
    Callers idle for a whole window are forgotten once a window.
    """

    def __init__(
        self, items: list[RateLimitItem], *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        #: Each limit in the order given: its amount, its window in seconds, and by caller
        #: the times of the hits within that window, oldest first.
        self.limits: list[tuple[int, float, dict[str, deque[float]]]] = [
            (item.amount, float(item.get_expiry()), {}) for item in items
        ]
        self.span = max(expiry for _, expiry, _ in self.limits)
        self._clock = clock
        self._swept = clock()

    def hit(self, who: str) -> int | None:
        """Count one hit of `who`: None when allowed, else seconds until one would be.

        As with `limits`, the limits are spent in order until one refuses.
        """
        now = self._clock()
        if now - self._swept > self.span:
            self._sweep(now)
        for amount, expiry, windows in self.limits:
            hits = windows.get(who)
            if hits is None:
                hits = windows[who] = deque()
            cutoff = now - expiry
            while hits and hits[0] <= cutoff:
                hits.popleft()
            if len(hits) >= amount:
                # The hit whose leaving lets one in (none: a limit of 0 is a whole window).
                oldest = hits[-amount] if amount else now
                return max(1, math.ceil(oldest + expiry - now))
            hits.append(now)
        return None

    def __len__(self) -> int:
        return sum(len(windows) for _, _, windows in self.limits)

    def _sweep(self, now: float) -> None:
        self._swept = now
        for _, expiry, windows in self.limits:
            cutoff = now - expiry
            for who in [who for who, hits in windows.items() if not hits or hits[-1] <= cutoff]:
                del windows[who]


class CallerLimit:
    """One budget per caller: spent by each request to GraphQL and each WebSocket operation."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.trusted_proxies = settings.trusted_proxies
        self.timeout = settings.cache_timeout_seconds
        self.items: list[RateLimitItem] = (
            parse_many(settings.rate_limit) if settings.rate_limit else []
        )
        self.limiter: MovingWindowRateLimiter | None = None
        self.windows: MovingWindows | None = None
        if self.items and settings.cache_url.startswith(("redis://", "rediss://")):
            self.limiter = MovingWindowRateLimiter(make_storage(settings))
        elif self.items:
            self.windows = MovingWindows(self.items, clock=clock)
        self._warned = 0.0

    @property
    def enabled(self) -> bool:
        """Whether a limit is configured."""
        return bool(self.items)

    async def spend(self, scope: Scope, caller: Caller) -> int | None:
        """Spend one of the caller's budget: None when it may pass, else seconds to wait."""
        if not self.items:
            return None
        who = caller.subject or f"addr:{client_address(scope, self.trusted_proxies)}"
        if self.windows is not None:  # in memory: nothing to wait for, nothing to fail
            return self.windows.hit(who)
        assert self.limiter is not None
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
        context = RequestContext.of(scope)
        caller = context.caller
        if caller is None:  # a public request (GraphiQL's page): nothing executes
            await self.app(scope, receive, send)
            return
        if context.admission is not None:  # counted by the gate already
            retry_after = context.admission.retry_after
        else:
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
