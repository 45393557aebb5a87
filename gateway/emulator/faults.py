"""Faults the emulator injects: PCS errors, latency, throttling, resets and broken bodies.

A fault plan is JSON, given at start in `PCS_EMULATOR_FAULTS` or posted to
`/_emulator/faults`:

    {"global": {"latencySeconds": 0.2},
     "clusters": {"demo-active": {"error": "ThrottlingException"}},
     "rateLimitPerSecond": 5}

A fault has any of `error` (one of the six PCS exceptions' names, or any other code,
which PCS would not send), `latencySeconds`, `reset` (the connection is cut mid-answer),
`malformed` (`garbage`, `truncated` or `empty`), and `times` (how many calls it hits
before it wears off; absent means for ever).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

MALFORMED_KINDS = frozenset({"garbage", "truncated", "empty"})

# Identifiers that always answer with one PCS exception, for error screens.
MAGIC_IDENTIFIERS = {
    "error-validation": "ValidationException",
    "error-access-denied": "AccessDeniedException",
    "error-not-found": "ResourceNotFoundException",
    "error-conflict": "ConflictException",
    "error-throttling": "ThrottlingException",
    "error-internal": "InternalServerException",
}


class FaultPlanError(ValueError):
    """A fault plan that cannot be followed."""


@dataclass
class Fault:
    """What goes wrong for one identifier, or for every call."""

    error: str | None = None
    latency_seconds: float = 0.0
    reset: bool = False
    malformed: str | None = None
    times: int | None = None

    @classmethod
    def parse(cls, raw: Any) -> Fault:
        if not isinstance(raw, dict):
            raise FaultPlanError("a fault is a JSON object")
        unknown = set(raw) - {"error", "latencySeconds", "reset", "malformed", "times"}
        if unknown:
            raise FaultPlanError(f"unknown fault keys: {sorted(unknown)}")
        malformed = raw.get("malformed")
        if malformed is not None and malformed not in MALFORMED_KINDS:
            raise FaultPlanError(f"malformed must be one of {sorted(MALFORMED_KINDS)}")
        latency = float(raw.get("latencySeconds", 0.0))
        if not 0 <= latency <= 600:
            raise FaultPlanError("latencySeconds must be between 0 and 600")
        times = raw.get("times")
        return cls(
            error=raw.get("error"),
            latency_seconds=latency,
            reset=bool(raw.get("reset", False)),
            malformed=malformed,
            times=None if times is None else int(times),
        )

    def use(self) -> bool:
        """Whether the fault still applies to this call (and count the use)."""
        if self.times is None:
            return True
        if self.times <= 0:
            return False
        self.times -= 1
        return True


@dataclass
class RateLimit:
    """A token bucket as PCS keeps per account: a burst of one second's calls, then the rate."""

    per_second: float
    tokens: float = 0.0
    updated: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.tokens = self.per_second

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.per_second, self.tokens + (now - self.updated) * self.per_second)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


@dataclass
class FaultPlan:
    """Every fault in force."""

    everywhere: Fault | None = None
    by_identifier: dict[str, Fault] = field(default_factory=dict)
    rate_limit: RateLimit | None = None

    @classmethod
    def parse(cls, raw: Any) -> FaultPlan:
        if not isinstance(raw, dict):
            raise FaultPlanError("a fault plan is a JSON object")
        unknown = set(raw) - {"global", "clusters", "rateLimitPerSecond"}
        if unknown:
            raise FaultPlanError(f"unknown plan keys: {sorted(unknown)}")
        clusters = raw.get("clusters") or {}
        if not isinstance(clusters, dict):
            raise FaultPlanError("clusters maps identifiers to faults")
        rate = raw.get("rateLimitPerSecond")
        if rate is not None and not 0 < float(rate) <= 100_000:
            raise FaultPlanError("rateLimitPerSecond must be positive")
        return cls(
            everywhere=Fault.parse(raw["global"]) if raw.get("global") else None,
            by_identifier={str(k): Fault.parse(v) for k, v in clusters.items()},
            rate_limit=RateLimit(float(rate)) if rate is not None else None,
        )

    def fault_for(self, identifier: str | None) -> Fault | None:
        """The fault that hits a call for this identifier, if any."""
        if identifier is not None:
            magic = MAGIC_IDENTIFIERS.get(identifier)
            if magic is not None:
                return Fault(error=magic)
            specific = self.by_identifier.get(identifier)
            if specific is not None and specific.use():
                return specific
        if self.everywhere is not None and self.everywhere.use():
            return self.everywhere
        return None
