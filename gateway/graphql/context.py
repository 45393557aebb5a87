"""What one GraphQL request carries down to its resolvers."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.trace import Tracer
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.dataloader import DataLoader

from gateway.config import Settings
from gateway.context import AnswerFacts, Caller, RequestContext
from gateway.service.clusters import ClusterAnswer, ClusterService
from gateway.service.live import LiveStatus
from gateway.service.regions import Regions


@dataclass
class GatewayContext:
    """Per-request context: the long-lived service, and what this request has learnt."""

    service: ClusterService
    settings: Settings
    #: The services of each region served; resolvers pick theirs with `regions.get(region)`.
    regions: Regions | None = None
    request: Request | WebSocket | None = None
    #: Strawberry's response for HTTP (status, headers), the socket for subscriptions.
    response: Response | WebSocket | None = None
    #: The request's facts from the layers in front (the caller, the request record).
    request_context: RequestContext = field(default_factory=RequestContext)
    #: One loader per request: duplicate identifiers in a request are looked up once.
    loader: DataLoader[str, ClusterAnswer] | None = None
    #: Paths and ages of clusters answered stale, reported in the response's extensions.
    stale: list[dict[str, Any]] = field(default_factory=list)
    #: True when the answer depends on the moment (ages, forced refresh): never reuse it.
    volatile: bool = False
    #: time.monotonic() past which fields still waiting for PCS fail.
    deadline: float = field(default_factory=lambda: time.monotonic() + 5.0)
    #: Cluster ids in a query's answer and when PCS sent them; empty: nothing to reuse.
    clusters: dict[str, float] = field(default_factory=dict)
    #: The earliest time (time.time()) one of those clusters stops being fresh.
    fresh_until: float = math.inf
    #: Each ageSeconds field resolved: (response key, fetched_at, value).
    ages: list[tuple[str, float, float]] = field(default_factory=list)
    #: The pollers and subscriptions of this process; None where live status is off.
    live: LiveStatus | None = None
    #: Opens a span per resolver that asks the cluster service; None: tracing is off.
    tracer: Tracer | None = None

    @property
    def caller(self) -> Caller | None:
        """The verified caller; None when no authentication layer ran."""
        return self.request_context.caller

    def note_answer(self, answer: ClusterAnswer) -> None:
        """Record a cluster a query's answer is built from, for the answer cache."""
        self.clusters[answer.cluster.id] = answer.fetched_at
        self.fresh_until = min(self.fresh_until, answer.fresh_until)

    def answer_facts(self) -> AnswerFacts | None:
        """What the answer cache needs of an answer without errors; None: nothing to learn."""
        if not self.clusters:
            return None
        reusable = not self.volatile and not self.stale
        return AnswerFacts(reusable, self.fresh_until, self.clusters, self.ages)
