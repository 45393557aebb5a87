"""Everything the emulator holds: each region's resources, faults, page tokens, calls."""

from __future__ import annotations

import json
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.emulator.faults import FaultPlan
from gateway.emulator.paging import DEFAULT_TOKEN_LIFETIME_SECONDS, PageTokens
from gateway.emulator.population import Population

#: Calls remembered in the log of /_emulator/calls; older ones are dropped.
CALL_LOG_LIMIT = 10_000
#: How long a status set at run time stays in transition before it settles.
DEFAULT_SETTLE_SECONDS = 30.0
#: The region of clusters seeded without one.
DEFAULT_REGION = "us-east-1"

Seed = Mapping[str, Iterable[dict[str, Any]]]


@dataclass
class EmulatorState:
    """Regions, faults and the record of calls."""

    seeded: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    regions: dict[str, Population] = field(default_factory=dict)
    plan: FaultPlan = field(default_factory=FaultPlan)
    clock: Callable[[], float] = time.time
    settle_seconds: float = DEFAULT_SETTLE_SECONDS
    token_lifetime_seconds: float = DEFAULT_TOKEN_LIFETIME_SECONDS
    calls: Counter[str] = field(default_factory=Counter)
    calls_by_region: Counter[tuple[str, str]] = field(default_factory=Counter)
    identifiers: list[str] = field(default_factory=list)
    #: One entry a call: operation, region, identifier, arrival (Unix time), status, request id.
    log: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=CALL_LOG_LIMIT))
    tokens: PageTokens = field(init=False)

    def __post_init__(self) -> None:
        self.tokens = PageTokens(self.token_lifetime_seconds, self.clock)

    def seed(self, by_region: Seed) -> None:
        """Remember the seed (a deep copy) and load it."""
        self.seeded = {r: json.loads(json.dumps(list(c))) for r, c in by_region.items()}
        self.restore()

    def restore(self) -> None:
        """Every region back to its seed; regions added at run time are emptied."""
        for population in self.regions.values():
            population.seed(())
        for region, clusters in self.seeded.items():
            self.region(region).seed(json.loads(json.dumps(clusters)))

    def region(self, name: str) -> Population:
        """A region's population, settled to now; an unseeded region starts empty."""
        population = self.regions.setdefault(name, Population())
        population.settle(self.clock())
        return population

    @property
    def clusters(self) -> dict[str, dict[str, Any]]:
        """The default region's clusters by name."""
        return self.region(DEFAULT_REGION).clusters

    def find(self, identifier: str, region: str = DEFAULT_REGION) -> dict[str, Any] | None:
        """A cluster by name or id."""
        return self.region(region).cluster(identifier)

    def count(self, region: str, operation: str) -> None:
        """Count an accepted call."""
        self.calls[operation] += 1
        self.calls_by_region[(region, operation)] += 1

    def counts(self) -> dict[str, dict[str, int]]:
        """Accepted calls by region, then operation."""
        found: dict[str, dict[str, int]] = {}
        for (region, operation), n in sorted(self.calls_by_region.items()):
            found.setdefault(region, {})[operation] = n
        return found

    def forget_calls(self) -> None:
        """Clear the counts, identifiers and log."""
        self.calls.clear()
        self.calls_by_region.clear()
        self.identifiers.clear()
        self.log.clear()
