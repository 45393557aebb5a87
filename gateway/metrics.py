"""Prometheus metrics: one registry per app, HTTP middleware, and collectors read at scrape.

Labels are bounded: routes are the app's own paths, never an identifier, a query text or
a caller's address.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.cache import CacheStats

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
KNOWN_ROUTES = frozenset({"/graphql", "/healthz", "/readyz", "/metrics"})


class Metrics:
    """The gateway's metrics, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "pcsgw_http_requests",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "pcsgw_http_request_duration_seconds",
            "HTTP request latency by route.",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "pcsgw_http_requests_in_flight", "HTTP requests being served.", registry=self.registry
        )
        self.graphql_errors = Counter(
            "pcsgw_graphql_errors",
            "GraphQL errors by extensions.code.",
            ["code"],
            registry=self.registry,
        )

    def watch(self, source: Callable[[], Iterator[Any]]) -> None:
        """Add a collector that reads live objects (cache counters, limiter, breaker) at scrape."""
        self.registry.register(_Reader(source))

    def render(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)


class _Reader(Collector):
    def __init__(self, source: Callable[[], Iterator[Any]]) -> None:
        self._source = source

    def collect(self) -> Iterator[Any]:
        yield from self._source()

    def describe(self) -> list[Any]:
        return []


def cache_families(stats: CacheStats, backend: str) -> Iterator[Any]:
    """The cluster cache's counters, labelled by backend."""
    for name, help_text in (
        ("hits", "Cluster cache hits."),
        ("misses", "Cluster cache misses that started a PCS call."),
        ("stale_answers", "Answers served stale because PCS failed."),
        ("coalesced_waits", "Requests that waited for another request's PCS call."),
        ("negative_hits", "Not-found answers served from the cache."),
        ("evictions", "Entries evicted by the memory bound."),
        ("errors", "Cache backend failures (read as misses)."),
        ("upstream_calls", "PCS GetCluster calls made by the cluster service."),
    ):
        family = CounterMetricFamily(f"pcsgw_cache_{name}", help_text, labels=["backend"])
        family.add_metric([backend], getattr(stats, name))
        yield family


def upstream_families(limiter: Any, breaker: Any) -> Iterator[Any]:
    """The upstream rate limiter's waits and rejections, and the breaker's state."""
    if limiter is not None:
        waits = CounterMetricFamily("pcsgw_upstream_ratelimit_waits", "Calls that waited.")
        waits.add_metric([], limiter.waits)
        rejected = CounterMetricFamily(
            "pcsgw_upstream_ratelimit_rejections", "Calls refused with THROTTLED."
        )
        rejected.add_metric([], limiter.rejections)
        yield waits
        yield rejected
    if breaker is not None:
        state = GaugeMetricFamily(
            "pcsgw_upstream_breaker_state", "1 for the breaker's current state.", labels=["state"]
        )
        for name in ("closed", "open", "half_open"):
            state.add_metric([name], 1.0 if breaker.state == name else 0.0)
        yield state
        opened = CounterMetricFamily("pcsgw_upstream_breaker_opened", "Times it opened.")
        opened.add_metric([], breaker.opened)
        yield opened


class MetricsMiddleware:
    """Counts and times every HTTP request by route, method and status."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path in KNOWN_ROUTES:
            route = path
        elif path.startswith("/graphql/assets/"):
            route = "/graphql/assets"
        else:
            route = "other"
        status = 500
        started = time.perf_counter()

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, counting_send)
        finally:
            self.metrics.in_flight.dec()
            self.metrics.requests.labels(route, scope["method"], str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)
