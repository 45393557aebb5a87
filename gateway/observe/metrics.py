"""Prometheus metrics: one registry per app, HTTP middleware, and collectors read at scrape.

Labels are bounded: routes are the app's own paths, operation names the first
`max_operation_names` seen (then `other`), upstream outcomes the model's error codes (then
`other`), regions the ones configured; never an identifier, a query text or a caller's
address.

With several worker processes (`PROMETHEUS_MULTIPROC_DIR` set), counters and histograms
live in that folder and every worker's scrape answers their sum over all workers. The
counters read from live objects at scrape (cluster cache, answer cache, rate limiter,
breaker) are mirrored there by each worker every `MIRROR_SECONDS` and at its own scrapes:
counters summed over all workers, gauges summed over the live ones.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.context import OPERATION_NAME
from gateway.service.store import CacheStats

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
GRAPHQL_ROUTE = "/graphql"
#: Probes and scrapes: the request log writes them at DEBUG, below the requests of clients.
QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})
KNOWN_ROUTES = QUIET_ROUTES | {GRAPHQL_ROUTE}
ASSETS_PREFIX = "/graphql/assets/"
#: The variable prometheus-client reads (at import) to keep metrics in files shared by workers.
MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
#: How often each worker copies its live counters into the shared folder.
MIRROR_SECONDS = 1.0
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
ANONYMOUS = "anonymous"
OTHER = "other"
#: An operation whose name could not be read (refused before parsing).
UNKNOWN = "unknown"


def route_of(path: str) -> str:
    """The route a path is counted and logged under: one of the app's own, or `other`."""
    if path in KNOWN_ROUTES:
        return path
    if path.startswith(ASSETS_PREFIX):
        return ASSETS_PREFIX.rstrip("/")
    return OTHER


class Metrics:
    """The gateway's metrics, in a registry of its own."""

    def __init__(self, *, max_operation_names: int = 100) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.multiprocess_dir = os.environ.get(MULTIPROCESS_VARIABLE) or None
        self.max_operation_names = max_operation_names
        self._operation_names: set[str] = set()
        self._mirror = _Mirror()
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
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "pcsgw_http_requests_in_flight",
            "HTTP requests being served.",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.graphql_errors = Counter(
            "pcsgw_graphql_errors",
            "GraphQL errors by extensions.code.",
            ["code"],
            registry=self.registry,
        )
        self.graphql_operations = Counter(
            "pcsgw_graphql_operations",
            "GraphQL operations by operation name and outcome (success, partial, error, refused).",
            ["operation", "outcome"],
            registry=self.registry,
        )
        self.upstream_calls = Counter(
            "pcsgw_upstream_calls",
            "PCS calls by operation, outcome (success, the AWS error code, or why none came) "
            "and region.",
            ["operation", "outcome", "region"],
            registry=self.registry,
        )
        self.upstream_attempts = Counter(
            "pcsgw_upstream_attempts",
            "HTTP attempts PCS received by operation and outcome, the SDK's retries included: "
            "what PCS quotas count.",
            ["operation", "outcome"],
            registry=self.registry,
        )
        self.upstream_latency = Histogram(
            "pcsgw_upstream_call_duration_seconds",
            "PCS call latency by operation and region: rate-limit wait and the SDK's retries "
            "included.",
            ["operation", "region"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def operation_label(self, name: str | None, *, admit: bool = True) -> str:
        """The label of an operation name: bounded, so a client cannot grow the series."""
        if name is None:
            return ANONYMOUS
        if name in self._operation_names:
            return name
        if (
            admit
            and len(self._operation_names) < self.max_operation_names
            and OPERATION_NAME.fullmatch(name)
        ):
            self._operation_names.add(name)
            return name
        return OTHER

    def watch(self, source: Callable[[], Iterator[Any]]) -> None:
        """Add a collector that reads live objects (cache counters, limiter, breaker) at scrape."""
        if self.multiprocess_dir is None:
            self.registry.register(_Reader(source))
        else:
            self._mirror.sources.append(source)

    def render(self) -> bytes:
        """The metrics in Prometheus text format: of this process, or summed over workers."""
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        self._mirror.copy()
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        return generate_latest(registry)

    async def mirror_forever(self) -> None:
        """With several workers: copy the live counters to the shared folder now and then."""
        if self.multiprocess_dir is None:
            return
        while True:
            self._mirror.copy()
            await asyncio.sleep(MIRROR_SECONDS)

    def close(self) -> None:
        """With several workers: take this worker's gauges out of the sums (it is leaving)."""
        if self.multiprocess_dir is not None:
            self._mirror.copy()
            mark_process_dead(os.getpid(), self.multiprocess_dir)  # type: ignore[no-untyped-call]


class _Mirror:
    """Copies families read from live objects into multiprocess-mode counters and gauges."""

    def __init__(self) -> None:
        self.sources: list[Callable[[], Iterator[Any]]] = []
        self._metrics: dict[str, Counter | Gauge] = {}
        self._copied: dict[tuple[str, tuple[str, ...]], float] = {}

    def copy(self) -> None:
        for source in self.sources:
            for family in source():
                self._copy(family)

    def _copy(self, family: Metric) -> None:
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            names = tuple(sample.labels)
            values = tuple(sample.labels[name] for name in names)
            metric = self._metrics.get(family.name)
            if metric is None:
                if family.type == "counter":
                    metric = Counter(family.name, family.documentation, names, registry=None)
                else:
                    metric = Gauge(
                        family.name,
                        family.documentation,
                        names,
                        registry=None,
                        multiprocess_mode="livesum",
                    )
                self._metrics[family.name] = metric
            child = metric.labels(*values) if names else metric
            if isinstance(child, Counter):
                key = (family.name, values)
                delta = sample.value - self._copied.get(key, 0.0)
                if delta > 0:
                    child.inc(delta)
                    self._copied[key] = sample.value
            else:
                child.set(sample.value)


class _Reader(Collector):
    def __init__(self, source: Callable[[], Iterator[Any]]) -> None:
        self._source = source

    def collect(self) -> Iterator[Any]:
        yield from self._source()

    def describe(self) -> list[Any]:
        return []


#: Counters of each region's lookups: (CacheStats field, help).
_LOOKUP_COUNTERS = (
    ("hits", "Cluster cache hits."),
    ("misses", "Cluster cache misses that started a PCS call."),
    ("stale_answers", "Answers served stale because PCS failed."),
    ("coalesced_waits", "Requests that waited for another request's PCS call."),
    ("refreshes_ahead", "Fetches started in the background near the end of a cluster's freshness."),
    ("negative_hits", "Not-found answers served from the cache."),
    ("upstream_calls", "PCS GetCluster calls made by the cluster service."),
)
#: Counters of the one store all regions share.
_STORE_COUNTERS = (
    ("evictions", "Entries evicted by the memory bound."),
    ("errors", "Cache backend failures (read as misses)."),
)


def cache_families(
    lookups: Mapping[str, CacheStats],
    store: CacheStats,
    backend: str,
    degraded: Callable[[], bool] | None = None,
) -> Iterator[Any]:
    """The cluster cache's counters (lookups by backend and region, the store's by backend),
    and whether the store is degraded now."""
    if degraded is not None:
        gauge = GaugeMetricFamily(
            "pcsgw_cache_degraded",
            "1 while the cache backend fails (answers come from PCS meanwhile), else 0.",
            labels=["backend"],
        )
        gauge.add_metric([backend], 1.0 if degraded() else 0.0)
        yield gauge
    for name, help_text in _LOOKUP_COUNTERS:
        family = CounterMetricFamily(f"pcsgw_cache_{name}", help_text, labels=["backend", "region"])
        for region, stats in lookups.items():
            family.add_metric([backend, region], getattr(stats, name))
        yield family
    for name, help_text in _STORE_COUNTERS:
        family = CounterMetricFamily(f"pcsgw_cache_{name}", help_text, labels=["backend"])
        family.add_metric([backend], getattr(store, name))
        yield family


class RateBudgetCounts(Protocol):
    """What the metrics read of the upstream rate budget."""

    @property
    def waits(self) -> int: ...
    @property
    def rejections(self) -> int: ...


class BreakerCounts(Protocol):
    """What the metrics read of the upstream circuit breaker."""

    @property
    def state(self) -> str: ...
    @property
    def opened(self) -> int: ...
    @property
    def refused(self) -> int: ...


@dataclass(frozen=True, slots=True)
class RegionBudget:
    """One region's upstream rate budget and breaker, as the metrics read them."""

    region: str
    limiter: RateBudgetCounts | None
    breaker: BreakerCounts | None


def upstream_families(budgets: Iterable[RegionBudget]) -> Iterator[Metric]:
    """Each region's rate-limit waits and rejections, and its breaker's state and counts."""
    budgets = list(budgets)
    limited = [(b.region, b.limiter) for b in budgets if b.limiter is not None]
    if limited:
        waits = CounterMetricFamily(
            "pcsgw_upstream_ratelimit_waits", "Calls that waited.", labels=["region"]
        )
        rejected = CounterMetricFamily(
            "pcsgw_upstream_ratelimit_rejections",
            "Calls refused with THROTTLED.",
            labels=["region"],
        )
        for region, limiter in limited:
            waits.add_metric([region], limiter.waits)
            rejected.add_metric([region], limiter.rejections)
        yield waits
        yield rejected
    guarded = [(b.region, b.breaker) for b in budgets if b.breaker is not None]
    if guarded:
        state = GaugeMetricFamily(
            "pcsgw_upstream_breaker_state",
            "1 for the breaker's current state.",
            labels=["region", "state"],
        )
        opened = CounterMetricFamily(
            "pcsgw_upstream_breaker_opened", "Times it opened.", labels=["region"]
        )
        refused = CounterMetricFamily(
            "pcsgw_upstream_breaker_refused",
            "Calls the open breaker kept from PCS.",
            labels=["region"],
        )
        for region, breaker in guarded:
            current = breaker.state
            for name in ("closed", "open", "half_open"):
                state.add_metric([region, name], 1.0 if current == name else 0.0)
            opened.add_metric([region], breaker.opened)
            refused.add_metric([region], breaker.refused)
        yield state
        yield opened
        yield refused


class MetricsMiddleware:
    """Counts and times every HTTP request by route, method and status."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        # The labelled children, looked up once each: as bounded as routes, methods, statuses.
        self._counters: dict[tuple[str, str, int], Counter] = {}
        self._latencies: dict[str, Histogram] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = route_of(scope["path"])
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
            self.count(route, scope["method"], status, time.perf_counter() - started)

    def count(self, route: str, method: str, status: int, seconds: float) -> None:
        """A request that has ended (and was counted in flight): by route, method, status.

        The middleware calls it; so does a layer that answers in front of it (the compiled
        lane), which counts the request in flight itself.
        """
        metrics = self.metrics
        metrics.in_flight.dec()
        key = (route, method, status)
        counter = self._counters.get(key)
        if counter is None:
            counter = metrics.requests.labels(route, method, str(status))
            if len(self._counters) < _MAX_CHILDREN:
                self._counters[key] = counter
        counter.inc()
        latency = self._latencies.get(route)
        if latency is None:
            latency = self._latencies[route] = metrics.latency.labels(route)
        latency.observe(seconds)


#: Labelled children a middleware keeps at hand (methods are the client's to choose).
_MAX_CHILDREN = 256


def hit_counter(metrics: Metrics) -> Callable[[Scope, int, float, bytes, str | None], None]:
    """Counts answers of the answer cache as `MetricsMiddleware` counts every other request."""
    requests: dict[tuple[str, int], Counter] = {}
    latency = metrics.latency.labels(GRAPHQL_ROUTE)

    def count(
        scope: Scope, status: int, seconds: float, request_id: bytes, note: str | None
    ) -> None:
        key = (scope["method"], status)
        counter = requests.get(key)
        if counter is None:
            counter = requests[key] = metrics.requests.labels(GRAPHQL_ROUTE, key[0], str(status))
        counter.inc()
        latency.observe(seconds)

    return count
