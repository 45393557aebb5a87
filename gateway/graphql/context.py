"""What one GraphQL request carries down to its resolvers."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from strawberry.dataloader import DataLoader

from gateway.clusters import ClusterAnswer, ClusterService
from gateway.config import Settings


@dataclass
class GatewayContext:
    """Per-request context: the long-lived service, and what this request has learnt."""

    service: ClusterService
    settings: Settings
    request: Any = None
    response: Any = None
    #: One loader per request: duplicate identifiers in a request are looked up once.
    loader: DataLoader[str, ClusterAnswer] | None = None
    #: Paths and ages of clusters answered stale, reported in the response's extensions.
    stale: list[dict[str, Any]] = field(default_factory=list)
    #: True when the answer depends on the moment (ages, forced refresh): never reuse it.
    volatile: bool = False
    #: time.monotonic() past which fields still waiting for PCS fail.
    deadline: float = field(default_factory=lambda: time.monotonic() + 5.0)
