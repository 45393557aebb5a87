"""The upstream rate limit: a token bucket per PCS endpoint and region.

A call waits for a token at most `max_wait` seconds; when the bucket would make it wait
longer it fails at once with Throttled and the time after which a token is due, so requests
never queue without bound.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable

from gateway.pcs import errors


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
            raise errors.Throttled(
                "The gateway is holding calls to PCS to its rate limit; retry later.",
                retry_after_seconds=max(1, math.ceil(wait)),
            )
        self._tokens -= 1
        if wait > 0:
            self.waits += 1
            await self._sleep(wait)
