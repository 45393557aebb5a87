"""The upstream rate limit: a token bucket per PCS endpoint and region, shared by replicas.

A call waits for a token at most `max_wait` seconds; when the bucket would make it wait
longer it fails at once with Throttled and the time after which a token is due, so requests
never queue without bound. With a shared bucket (Redis) every replica draws from one budget;
while it is unreachable each replica keeps to its own share.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from gateway.pcs import errors

log = logging.getLogger(__name__)


def _throttled(wait: float) -> errors.Throttled:
    return errors.Throttled(
        "The gateway is holding calls to PCS to its rate limit; retry later.",
        retry_after_seconds=max(1, math.ceil(wait)),
    )


class TokenBucket:
    """At most `rate` calls a second on average, bursts of at most `burst`."""

    def __init__(
        self,
        rate: float,
        *,
        burst: float | None = None,
        max_wait: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self.max_wait = max_wait
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._updated = clock()
        #: Calls that waited for a token, and calls refused; read by the metrics.
        self.waits = 0
        self.rejections = 0

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    async def acquire(self) -> None:
        """Take a token, waiting briefly if need be; raise Throttled when it would take long."""
        self._refill()
        # Reserve now, so callers waiting at once line up behind each other.
        wait = (1.0 - self._tokens) / self.rate if self._tokens < 1 else 0.0
        if wait > self.max_wait:
            self.rejections += 1
            raise _throttled(wait)
        self._tokens -= 1
        if wait > 0:
            self.waits += 1
            await self._sleep(wait)


class RateBudget(Protocol):
    """What the PCS client needs of a rate limit: a token per HTTP attempt, and counts."""

    waits: int
    rejections: int

    async def acquire(self) -> None:
        """Take a token, waiting briefly if need be; raise Throttled when it would take long."""
        ...


class SharedTokens(Protocol):
    """A token bucket shared by every replica (kept in Redis)."""

    async def reserve(self) -> float:
        """Seconds to wait for the reserved token; negative: refused, a token due then.

        Raises any exception when the shared bucket cannot be reached.
        """
        ...


class SharedBudget:
    """The deployment's budget through `shared`; the replica's share (`local`) while it fails."""

    def __init__(
        self,
        shared: SharedTokens,
        local: TokenBucket,
        *,
        retry_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.shared = shared
        self.local = local
        self.retry_seconds = retry_seconds
        self._clock = clock
        self._retry_at = 0.0
        #: False while the shared bucket is unreachable and the replica's share applies.
        self.is_shared = True
        self.waits = 0
        self.rejections = 0

    async def acquire(self) -> None:
        """Take a token of the shared bucket, or of the replica's share while it fails."""
        if self.is_shared or self._clock() >= self._retry_at:
            try:
                wait = await self.shared.reserve()
            except Exception as exc:  # any failure of the shared bucket
                if self.is_shared:
                    log.warning(
                        "shared PCS rate budget unreachable, using the replica's share: %s", exc
                    )
                self.is_shared = False
                self._retry_at = self._clock() + self.retry_seconds
            else:
                if not self.is_shared:
                    log.info("shared PCS rate budget reachable again")
                self.is_shared = True
                if wait < 0:
                    self.rejections += 1
                    raise _throttled(-wait)
                if wait > 0:
                    self.waits += 1
                    await asyncio.sleep(wait)
                return
        await self._take_local()

    async def _take_local(self) -> None:
        local = self.local
        before = local.waits, local.rejections
        try:
            await local.acquire()
        finally:
            self.waits += local.waits - before[0]
            self.rejections += local.rejections - before[1]
