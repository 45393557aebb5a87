"""Live status over HTTP: the open subscription connections, their end, their metrics.

`LiveConnections` is an ASGI layer around `/graphql` that keeps each WebSocket and SSE
connection while it is open: it logs one line per connection when it ends, and on drain
closes every WebSocket with 1001 (going away) once its subscriptions have completed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.context import RequestContext
from gateway.http.state import GatewayState
from gateway.pcs.rate_budget import SharedBudget
from gateway.service.live import POLL_LEASE_PREFIX

log = logging.getLogger("gateway.live")

#: Channel names of change events in Redis: this, then the PCS endpoint and identifier.
CHANGES_PREFIX = "pcsgw:live:changes:"
GOING_AWAY = 1001


@dataclass(eq=False)
class _Connection:
    transport: str
    send: Send
    started: float = field(default_factory=time.monotonic)
    closed: bool = False
    close_code: int | None = None


def transport_of(scope: Scope) -> str | None:
    """ "websocket" or "sse" for a subscription connection, else None."""
    if scope["type"] == "websocket":
        return "websocket"
    if scope["type"] == "http" and scope["method"] == "POST":
        for name, value in scope["headers"]:
            if name == b"accept" and b"text/event-stream" in value:
                return "sse"
    return None


class OpenConnections:
    """The subscription connections open now."""

    def __init__(self) -> None:
        self.open: set[_Connection] = set()
        self.opened = 0

    async def close_all(self) -> None:
        """Close every WebSocket with 1001; SSE streams end as their subscriptions complete."""
        for connection in list(self.open):
            if connection.transport == "websocket" and not connection.closed:
                connection.closed = True
                connection.close_code = GOING_AWAY
                try:
                    await connection.send(
                        {"type": "websocket.close", "code": GOING_AWAY, "reason": "going away"}
                    )
                except Exception:  # the socket went already
                    log.debug("a WebSocket was gone before the drain closed it")


class LiveConnections:
    """ASGI layer: the subscription connections open now, each logged once when it ends."""

    def __init__(self, app: ASGIApp, *, connections: OpenConnections) -> None:
        self.app = app
        self.connections = connections

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        transport = transport_of(scope)
        if transport is None:
            await self.app(scope, receive, send)
            return
        connection = _Connection(transport, send)

        async def watching(message: Message) -> None:
            if message["type"] == "websocket.close":
                connection.closed = True
                connection.close_code = message.get("code", 1000)
            await send(message)

        self.connections.open.add(connection)
        self.connections.opened += 1
        try:
            await self.app(scope, receive, watching)
        finally:
            self.connections.open.discard(connection)
            caller = RequestContext.of(scope).caller
            log.info(
                "%s connection ended after %.1fs%s",
                transport,
                time.monotonic() - connection.started,
                "" if connection.close_code is None else f" (close {connection.close_code})",
                extra={
                    "transport": transport,
                    "duration_seconds": round(time.monotonic() - connection.started, 3),
                    "close_code": connection.close_code,
                    "caller": None if caller is None else caller.subject,
                },
            )


def live_families(state: GatewayState, connections: OpenConnections) -> Iterator[Metric]:
    """Open connections and subscriptions, pollers, polls, events, leases, the shared budget."""
    open_now = GaugeMetricFamily(
        "pcsgw_live_connections", "Subscription connections open.", labels=["transport"]
    )
    for transport in ("websocket", "sse"):
        count = sum(1 for c in connections.open if c.transport == transport)
        open_now.add_metric([transport], count)
    yield open_now
    live = state.live
    if live is not None:
        stats = live.stats
        yield _gauge("pcsgw_live_subscriptions", "Subscriptions open.", stats.subscriptions)
        yield _gauge("pcsgw_live_pollers", "Clusters this process polls or follows.", live.pollers)
        yield _counter("pcsgw_live_polls", "Polls of subscribed clusters.", stats.polls)
        yield _counter("pcsgw_live_events", "Events sent to subscribers.", stats.events)
        yield _counter(
            "pcsgw_live_published", "Changes published to other replicas.", stats.published
        )
        yield _counter(
            "pcsgw_live_slow_consumers",
            "Subscriptions ended for falling behind.",
            stats.slow_consumers,
        )
    coordination = state.coordination
    if coordination is not None:
        # The polls it leads; a cold miss's short lease while it asks PCS is no lead.
        leading = sum(1 for key in coordination.leases.held if key.startswith(POLL_LEASE_PREFIX))
        yield _gauge("pcsgw_live_leases", "Clusters whose poll this process leads.", leading)
        yield _gauge(
            "pcsgw_coordination_connected",
            "1 while change events from other replicas arrive through Redis.",
            1 if coordination.channels.connected else 0,
        )
    client = state.client
    if client is not None and isinstance(client.limiter, SharedBudget):
        yield _gauge(
            "pcsgw_upstream_ratelimit_shared",
            "1 while the deployment's shared PCS budget applies; 0: this replica's share.",
            1 if client.limiter.is_shared else 0,
        )


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation)
    family.add_metric([], value)
    return family


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation)
    family.add_metric([], value)
    return family
