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
from gateway.graphql.cursors import Cursors
from gateway.graphql.graph import RequestGraph
from gateway.service.clusters import ClusterAnswer, ClusterService
from gateway.service.live import LiveStatus
from gateway.service.regions import Regions


@dataclass
class GatewayContext:
    """Per-request context: the long-lived service, and what this request has learnt."""

    #: The default region's cluster service.
    service: ClusterService
    settings: Settings
    #: The services of each region served; resolvers pick theirs with `regions.get(region)`.
    regions: Regions
    #: Signs and reads the cursors of list pages (one key for the process or deployment).
    cursors: Cursors = field(default_factory=Cursors)
    request: Request | WebSocket | None = None
    #: Strawberry's response for HTTP (status, headers), the socket for subscriptions.
    response: Response | WebSocket | None = None
    #: The request's facts from the layers in front (the caller, the request record).
    request_context: RequestContext = field(default_factory=RequestContext)
    #: One loader per region and request: duplicate identifiers are looked up once.
    loaders: dict[str, DataLoader[str, ClusterAnswer]] = field(default_factory=dict)
    #: Paths and ages of clusters answered stale, reported in the response's extensions.
    stale: list[dict[str, Any]] = field(default_factory=list)
    #: True when the answer depends on the moment (ages, forced refresh): never reuse it.
    volatile: bool = False
    #: time.monotonic() past which fields still waiting for PCS fail.
    deadline: float = field(default_factory=lambda: time.monotonic() + 5.0)
    #: The resources (clusters, queues, node groups, tags, list pages) in a query's answer
    #: and when PCS sent each; empty: nothing to reuse.
    resource_versions: dict[str, float] = field(default_factory=dict)
    #: The earliest time (time.time()) one of those resources stops being fresh.
    fresh_until: float = math.inf
    #: Each ageSeconds field resolved: (response key, fetched_at, value).
    ages: list[tuple[str, float, float]] = field(default_factory=list)
    #: The pollers and subscriptions of this process; None where live status is off.
    live: LiveStatus | None = None
    #: Opens a span per resolver that asks the cluster service; None: tracing is off.
    tracer: Tracer | None = None
    _graph: RequestGraph | None = None

    @property
    def resources(self) -> RequestGraph:
        """The request's resource graph: pages, related resources, tags (made on first use)."""
        if self._graph is None:
            self._graph = RequestGraph(self)
        return self._graph

    @property
    def caller(self) -> Caller | None:
        """The verified caller; None when no authentication layer ran."""
        return self.request_context.caller

    def note_answer(self, answer: ClusterAnswer) -> None:
        """Record a cluster a query's answer is built from, for the answer cache."""
        # By ARN: unique across regions, where an id is only unique within one.
        self.note_resource(answer.cluster.arn, answer.fetched_at, answer.fresh_until)

    def note_resource(self, key: str, fetched_at: float, fresh_until: float) -> None:
        """Record a resource (or page) a query's answer is built from: it is as fresh as all."""
        self.resource_versions[key] = fetched_at
        self.fresh_until = min(self.fresh_until, fresh_until)

    def answer_facts(self) -> AnswerFacts | None:
        """What the answer cache needs of an answer without errors; None: nothing to learn."""
        if not self.resource_versions:
            return None
        reusable = not self.volatile and not self.stale
        return AnswerFacts(reusable, self.fresh_until, self.resource_versions, self.ages)
