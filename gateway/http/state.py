"""The long-lived parts of a running gateway, made in the lifespan and read by each request."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.config import Settings
from gateway.context import Caller
from gateway.coordination.changes import ChangeChannels
from gateway.coordination.lease import Leases
from gateway.graphiql import GraphiQLPage
from gateway.graphql.apq import PersistedQueries
from gateway.graphql.compiler import Plans
from gateway.graphql.cursors import Cursors
from gateway.graphql.trusted_documents import TrustedDocuments
from gateway.observe.metrics import Metrics
from gateway.observe.tracing import Tracing
from gateway.pcs.client import PcsClient
from gateway.service.clusters import ClusterService
from gateway.service.live import LiveStatus
from gateway.service.regions import Regions
from gateway.service.store import CacheStats, CacheStore


class CallerBudget(Protocol):
    """The per-caller rate limit, as the view spends it for each WebSocket operation."""

    async def spend(self, scope: MutableMapping[str, Any], caller: Caller) -> int | None:
        """None when the caller may go on, else the seconds until it may."""


@dataclass
class ObserveParts:
    """Metrics, made with the app; tracing, when the `OTEL_*` variables turn it on."""

    metrics: Metrics
    tracing: Tracing | None = None


@dataclass
class GraphQLParts:
    """What the GraphQL view serves besides the schema: persisted documents, GraphiQL."""

    apq: PersistedQueries | None = None
    trusted: TrustedDocuments | None = None
    #: Compiled plans of known query documents (made with the view).
    plans: Plans | None = None
    graphiql: GraphiQLPage | None = None
    #: Signs and reads page cursors; the lifespan gives it the configured key.
    cursors: Cursors = field(default_factory=Cursors)


@dataclass
class Coordination:
    """The Redis parts replicas share, for the probes and metrics."""

    leases: Leases
    channels: ChangeChannels


@dataclass
class GatewayState:
    """The long-lived parts, made in the lifespan and handed to each request."""

    settings: Settings
    observe: ObserveParts
    graphql: GraphQLParts = field(default_factory=GraphQLParts)
    #: The store's counters and the default region's lookups (other regions count their own).
    stats: CacheStats = field(default_factory=CacheStats)
    #: The default region's cluster service.
    service: ClusterService | None = None
    #: Every region served, the default first.
    regions: Regions | None = None
    store: CacheStore | None = None
    #: The default region's PCS client.
    client: PcsClient | None = None
    #: The per-caller rate limit, spent again by each operation on a WebSocket.
    caller_budget: CallerBudget | None = None
    #: The pollers and subscriptions of this process.
    live: LiveStatus | None = None
    #: Replicas' coordination through Redis (poll leases, change events, the rate budget).
    coordination: Coordination | None = None
    #: Run when SIGTERM starts the drain, before waiting for requests in flight.
    on_drain: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    ready: bool = False
    draining: bool = False
    demo_endpoint: str | None = None
