"""Faults the emulator injects: PCS errors, latency, throttling, resets and broken bodies.

A fault plan is JSON, given at start in `PCS_EMULATOR_FAULTS` or put to
`/_emulator/faults`:

    {"global": {"latencySeconds": 0.2},
     "clusters": {"demo-active": {"error": "ThrottlingException", "times": 3},
                  "demo-full": {"rateLimitPerSecond": 1}},
     "operations": {"GetQueue": {"error": "InternalServerException", "times": 1}},
     "resources": {"batch": {"latencySeconds": 1}},
     "rateLimitPerSecond": 5,
     "regions": {"eu-west-1": {"global": {"error": "InternalServerException"}}}}

A fault has any of `error` (one of the six PCS exceptions' names, or any other code,
which PCS would not send), `httpStatus` (the status to send it with, instead of the one the
model implies: an AWS front end may answer 503 ServiceUnavailableException),
`retryAfterSeconds` (what a ThrottlingException advises), `latencySeconds`, `reset` (the
connection is cut mid-answer), `malformed` (`garbage`, `truncated` or `empty`),
`rateLimitPerSecond` (calls above this rate are throttled) and `times` (how many calls it
hits before it wears off; absent means for ever).

`clusters` faults hit GetCluster calls for that cluster (by the identifier the call names);
`operations` faults hit every call of one PCS operation; `resources` faults hit the calls
that name a queue or compute node group (GetQueue, GetComputeNodeGroup, by the identifier
the call names) or a resource's ARN (ListTagsForResource). The most specific fault wins:
resource or cluster, then operation, then `global`. The plan's own `rateLimitPerSecond`
throttles all calls together, as PCS's account quota does.

`regions` maps a region name to a plan of the same form (without `regions`) that hits only
the calls signed for that region, as a regional outage would; a call meets its region's
plan first, then the plan's own faults.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from gateway.pcs.model import load_model

MALFORMED_KINDS = frozenset({"garbage", "truncated", "empty"})
FAULT_KEYS = frozenset(
    {"error", "httpStatus", "retryAfterSeconds", "latencySeconds", "reset", "malformed"}
    | {"rateLimitPerSecond", "times"}
)
PLAN_KEYS = frozenset(
    {"global", "clusters", "operations", "resources", "rateLimitPerSecond", "regions"}
)
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d{1,2}")
#: What an AWS error code looks like (`__type` after the `#`).
_ERROR_CODE = re.compile(r"[A-Za-z][A-Za-z0-9]{0,99}")
#: How long PCS advises to wait when it throttles, unless a fault says otherwise.
DEFAULT_RETRY_AFTER_SECONDS = 2

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
    """A fault plan that cannot be followed; the message says which key is wrong."""


def _number(raw: dict[str, Any], key: str, low: float, high: float) -> float | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise FaultPlanError(f"{key} must be a number from {low:g} to {high:g}")
    return float(value)


@dataclass
class RateLimit:
    """A token bucket as PCS keeps per account: a burst of one second's calls, then the rate."""

    per_second: float
    tokens: float = 0.0
    updated: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.tokens = max(1.0, self.per_second)

    def take(self) -> bool:
        """Whether a call may pass now (and count it)."""
        now = time.monotonic()
        burst = max(1.0, self.per_second)
        self.tokens = min(burst, self.tokens + (now - self.updated) * self.per_second)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


@dataclass
class Fault:
    """What goes wrong for one identifier, or for every call."""

    error: str | None = None
    http_status: int | None = None
    retry_after_seconds: int = DEFAULT_RETRY_AFTER_SECONDS
    latency_seconds: float = 0.0
    reset: bool = False
    malformed: str | None = None
    rate_limit: RateLimit | None = None
    times: int | None = None

    @classmethod
    def parse(cls, raw: Any) -> Fault:
        """A fault from its JSON form; raises FaultPlanError naming the bad key."""
        if not isinstance(raw, dict):
            raise FaultPlanError("a fault is a JSON object")
        unknown = set(raw) - FAULT_KEYS
        if unknown:
            raise FaultPlanError(f"unknown fault keys: {sorted(unknown)}")
        error = raw.get("error")
        if error is not None and (not isinstance(error, str) or not _ERROR_CODE.fullmatch(error)):
            raise FaultPlanError("error must be an error code such as ThrottlingException")
        malformed = raw.get("malformed")
        if malformed is not None and malformed not in MALFORMED_KINDS:
            raise FaultPlanError(f"malformed must be one of {sorted(MALFORMED_KINDS)}")
        reset = raw.get("reset", False)
        if not isinstance(reset, bool):
            raise FaultPlanError("reset must be true or false")
        times = _number(raw, "times", 0, 1_000_000_000)
        if times is not None and times != int(times):
            raise FaultPlanError("times must be a whole number")
        status = _number(raw, "httpStatus", 400, 599)
        if status is not None and (status != int(status) or error is None):
            raise FaultPlanError("httpStatus must be a whole number from 400 to 599, with error")
        retry_after = _number(raw, "retryAfterSeconds", 0, 86_400)
        if retry_after is not None and retry_after != int(retry_after):
            raise FaultPlanError("retryAfterSeconds must be a whole number")
        rate = _number(raw, "rateLimitPerSecond", 0.001, 100_000)
        return cls(
            error=error,
            http_status=None if status is None else int(status),
            retry_after_seconds=(
                DEFAULT_RETRY_AFTER_SECONDS if retry_after is None else int(retry_after)
            ),
            latency_seconds=_number(raw, "latencySeconds", 0, 600) or 0.0,
            reset=reset,
            malformed=malformed,
            rate_limit=None if rate is None else RateLimit(rate),
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
class FaultPlan:
    """Every fault in force."""

    everywhere: Fault | None = None
    by_identifier: dict[str, Fault] = field(default_factory=dict)
    by_operation: dict[str, Fault] = field(default_factory=dict)
    by_resource: dict[str, Fault] = field(default_factory=dict)
    rate_limit: RateLimit | None = None
    #: Plans that hit only the calls of one region.
    by_region: dict[str, FaultPlan] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: Any, *, nested: bool = False) -> FaultPlan:
        """A plan from its JSON form; raises FaultPlanError naming the bad key."""
        if not isinstance(raw, dict):
            raise FaultPlanError("a fault plan is a JSON object")
        unknown = set(raw) - (PLAN_KEYS - {"regions"} if nested else PLAN_KEYS)
        if unknown:
            raise FaultPlanError(f"unknown plan keys: {sorted(unknown)}")
        clusters = _faults(raw, "clusters", "clusters maps identifiers to faults")
        operations = _faults(raw, "operations", "operations maps PCS operation names to faults")
        known = set(load_model()["operations"])
        strangers = sorted(set(operations) - known)
        if strangers:
            raise FaultPlanError(f"operations: not PCS operations: {strangers}")
        resources = _faults(raw, "resources", "resources maps names, ids or ARNs to faults")
        rate = _number(raw, "rateLimitPerSecond", 0.001, 100_000)
        regions = raw.get("regions") or {}
        if not isinstance(regions, dict) or not all(_REGION.fullmatch(r) for r in regions):
            raise FaultPlanError("regions maps region names such as eu-west-1 to fault plans")
        return cls(
            everywhere=Fault.parse(raw["global"]) if raw.get("global") else None,
            by_identifier=clusters,
            by_operation=operations,
            by_resource=resources,
            rate_limit=None if rate is None else RateLimit(rate),
            by_region={r: cls.parse(plan, nested=True) for r, plan in regions.items()},
        )

    def for_call(self, region: str) -> list[FaultPlan]:
        """The plans a call signed for `region` meets, the region's own first."""
        regional = self.by_region.get(region)
        return [self] if regional is None else [regional, self]

    def _candidates(
        self, operation: str, identifier: str | None, resource: str | None
    ) -> list[Fault | None]:
        # Most specific first: the resource or cluster named, the operation, everything.
        named = self.by_resource.get(resource) if resource is not None else None
        if named is None and identifier is not None and operation == "GetCluster":
            named = self.by_identifier.get(identifier)
        return [named, self.by_operation.get(operation), self.everywhere]

    def throttles(
        self, identifier: str | None, *, operation: str = "GetCluster", resource: str | None = None
    ) -> Fault | None:
        """The throttling answer for a call over a rate, if any (checked before other faults)."""
        if self.rate_limit is not None and not self.rate_limit.take():
            return Fault(
                error="ThrottlingException", retry_after_seconds=_retry_after(self.rate_limit)
            )
        for fault in self._candidates(operation, identifier, resource):
            if fault is not None and fault.rate_limit is not None and not fault.rate_limit.take():
                advice = _retry_after(fault.rate_limit)
                return Fault(error="ThrottlingException", retry_after_seconds=advice)
        return None

    def fault_for(
        self, identifier: str | None, *, operation: str = "GetCluster", resource: str | None = None
    ) -> Fault | None:
        """The fault that hits a call naming this cluster (and queue or node group), if any."""
        for named in (resource, identifier):
            magic = MAGIC_IDENTIFIERS.get(named or "")
            if magic is not None:
                return Fault(error=magic)
        for fault in self._candidates(operation, identifier, resource):
            if fault is not None and fault.use():
                return fault
        return None


def _faults(raw: dict[str, Any], key: str, shape: str) -> dict[str, Fault]:
    found = raw.get(key) or {}
    if not isinstance(found, dict):
        raise FaultPlanError(shape)
    return {str(k): Fault.parse(v) for k, v in found.items()}


def _retry_after(rate_limit: RateLimit) -> int:
    # The bucket refills one call in 1/rate seconds; whole seconds, as the model's Integer.
    return max(1, round(1 / rate_limit.per_second))
