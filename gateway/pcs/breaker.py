"""The circuit breaker: after repeated upstream failures, stop calling PCS for a while.

closed: calls pass; `threshold` failures in a row open it.
open: calls fail at once (stale answers still serve) until `open_seconds` have passed.
half-open: one probe call passes; its success closes the breaker, its failure opens it again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from enum import StrEnum

from gateway.pcs import errors

log = logging.getLogger(__name__)


class BreakerState(StrEnum):
    """Where the breaker stands."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Counts consecutive upstream failures; opens, probes and closes by itself."""

    def __init__(
        self,
        *,
        threshold: int,
        open_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.open_seconds = open_seconds
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False
        #: Times the breaker opened, and calls it refused; read by the metrics.
        self.opened = 0
        self.refused = 0

    @property
    def state(self) -> BreakerState:
        """closed, open, or half-open once the open time has passed."""
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - self._opened_at < self.open_seconds:
            return BreakerState.OPEN
        return BreakerState.HALF_OPEN

    def before_call(self) -> None:
        """Let the call pass, or raise CircuitOpen (an UpstreamUnavailable) at once."""
        state = self.state
        if state is BreakerState.CLOSED:
            return
        if state is BreakerState.HALF_OPEN and not self._probing:
            self._probing = True
            return
        self.refused += 1
        raise errors.CircuitOpen(
            "PCS is failing; the gateway is not calling it for a short while.",
            detail="circuit breaker open",
        )

    def succeeded(self) -> None:
        """An answer came back: close."""
        if self._opened_at is not None:
            log.info("PCS answered again: circuit breaker closed")
        self._failures = 0
        self._opened_at = None
        self._probing = False

    def failed(self) -> None:
        """The upstream failed: count it, and open at the threshold or after a failed probe."""
        self._failures += 1
        if self._probing or self._failures >= self.threshold:
            if self._opened_at is None or self._probing:
                self.opened += 1
                log.warning(
                    "circuit breaker opened after %d upstream failures in a row: "
                    "no PCS calls for %.1f s",
                    self._failures,
                    self.open_seconds,
                )
            self._opened_at = self._clock()
            self._probing = False

    def abandoned(self) -> None:
        """A call ended without reaching PCS (cancelled, held back): let another probe."""
        self._probing = False
