"""The gateway's wiring: the layers in front of Starlette, the routes, and the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import logging
import os
from collections.abc import AsyncIterator, Callable, Mapping

from opentelemetry.sdk.trace import TracerProvider
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Route, WebSocketRoute

from gateway.config import ENV_PREFIX, Settings, SettingsError
from gateway.coordination.budget import RedisTokens
from gateway.coordination.changes import ChangeChannels
from gateway.coordination.lease import Leases
from gateway.coordination.link import connect, coordination_url
from gateway.demo import DEMO_CREDENTIALS, DEMO_REGIONS, running_emulator
from gateway.graphiql import GraphiQLPage
from gateway.graphql.apq import PersistedQueries
from gateway.graphql.compiler import plan_families
from gateway.graphql.cursors import Cursors
from gateway.graphql.trusted_documents import ManifestError, TrustedDocuments
from gateway.http.answer_cache import AnswerCache, answer_families
from gateway.http.body_limit import BodyLimitMiddleware
from gateway.http.compiled_lane import CompiledLane
from gateway.http.live import CHANGES_PREFIX, LiveConnections, OpenConnections, live_families
from gateway.http.probes import probe_routes
from gateway.http.state import Coordination, GatewayState, ObserveParts
from gateway.http.view import GraphQLView
from gateway.observe.metrics import (
    Metrics,
    MetricsMiddleware,
    RegionBudget,
    cache_families,
    hit_counter,
    upstream_families,
)
from gateway.observe.request_log import RequestLogMiddleware, hit_observer
from gateway.observe.tracing import Tracing
from gateway.observe.upstream import ObservedCalls, ObservedLookups
from gateway.pcs.client import PcsClient
from gateway.security.layers import Security
from gateway.service import store as cache
from gateway.service.clusters import ClusterService
from gateway.service.live import LiveStatus
from gateway.service.regions import Regions, RegionServices
from gateway.service.resources import ResourceServices
from gateway.service.store import CacheStats, CacheStore

log = logging.getLogger(__name__)


def create_app(settings: Settings, *, tracer_provider: TracerProvider | None = None) -> AnswerCache:
    """The gateway as an ASGI application: the answer cache in front of Starlette.

    Tracing follows the `OTEL_*` variables unless a `tracer_provider` is given; a bad
    trusted-documents manifest raises SettingsError.
    """
    tracing = (
        Tracing(tracer_provider) if tracer_provider is not None else Tracing.from_environment()
    )
    metrics = Metrics(max_operation_names=settings.metrics_max_operation_names)
    security = Security(settings)
    state = GatewayState(
        settings=settings, observe=ObserveParts(metrics, tracing), caller_budget=security.rate_limit
    )
    connections = OpenConnections()
    state.on_drain.append(connections.close_all)
    metrics.watch(lambda: live_families(state, connections))
    graphql = GraphQLView(
        state,
        graphql_ide="graphiql" if settings.graphiql_enabled else None,
        allow_queries_via_get=True,
        allowed_origins=settings.cors_allow_origins,
    )
    if settings.trusted_documents_file is not None:
        try:
            state.graphql.trusted = TrustedDocuments.load(
                settings.trusted_documents_file,
                graphql.gateway_schema._schema,
                only=settings.trusted_documents_only,
            )
        except ManifestError as exc:
            raise SettingsError(f"{ENV_PREFIX}TRUSTED_DOCUMENTS_FILE: {exc}") from None
    app = Starlette(
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
            *probe_routes(state),
        ],
        middleware=[
            Middleware(RequestLogMiddleware, metrics=metrics, tracing=tracing),
            Middleware(MetricsMiddleware, metrics=metrics),
            *security.middleware(),
            Middleware(LiveConnections, connections=connections),
            Middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes),
        ],
        lifespan=lambda app: lifespan(state),
    )
    app.state.gateway = state
    inner: Starlette | CompiledLane = app
    if settings.compiled_lane and settings.compiled_plans_max_entries > 0:
        # Known queries answered by their plans in front of Starlette, after the gate, with
        # the headers of the CORS layer configured inside.
        inner = CompiledLane(
            app, state=state, view=graphql, cors=_cors_layer(security.middleware(), app)
        )
    answers = AnswerCache(
        inner,
        max_entries=settings.answer_cache_max_entries,
        max_bytes=settings.answer_cache_max_bytes,
        max_body_bytes=settings.max_body_bytes,
        gate=security.gate,
    )
    metrics.watch(lambda: answer_families(answers))
    plans = state.graphql.plans
    if plans is not None:
        metrics.watch(lambda: plan_families(plans))
    answers.observers.append(hit_counter(metrics))
    answers.observers.append(hit_observer(metrics, tracing))
    return answers


def _cors_layer(layers: list[Middleware], app: Starlette) -> CORSMiddleware:
    """The CORS layer among `layers`, made as Starlette makes it (same options)."""
    for layer in layers:
        cls, args, kwargs = layer
        if cls is CORSMiddleware:
            return CORSMiddleware(app, *args, **kwargs)
    raise LookupError("no CORS layer")


def region_names(settings: Settings, environ: Mapping[str, str]) -> tuple[str | None, ...]:
    """The regions to serve, the default first: as configured, the demo's, or the SDK's one.

    None stands for the region the SDK finds itself (AWS_DEFAULT_REGION, the profile).
    """
    if settings.regions:
        return tuple(settings.regions)
    if settings.demo:
        return DEMO_REGIONS
    # botocore reads AWS_DEFAULT_REGION only; the other SDKs honour AWS_REGION first.
    return (environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or None,)


def shared_budget(redis: Redis, settings: Settings) -> Callable[[str], RedisTokens]:
    """The deployment's PCS rate budget in Redis, one bucket per endpoint and region."""

    def tokens(where: str) -> RedisTokens:
        return RedisTokens(
            redis,
            key=f"pcsgw:budget:{where}",
            rate=settings.pcs_rate_limit_per_second,
            burst=settings.pcs_rate_limit_burst or max(1.0, settings.pcs_rate_limit_per_second),
            max_wait=settings.pcs_rate_limit_max_wait_seconds,
        )

    return tokens


@contextlib.asynccontextmanager
async def lifespan(state: GatewayState) -> AsyncIterator[None]:
    """Make the long-lived parts into `state` at start; close them, in reverse, at stop."""
    settings = state.settings
    metrics, tracing = state.observe.metrics, state.observe.tracing
    tracer = None if tracing is None else tracing.tracer
    async with contextlib.AsyncExitStack() as stack:
        if tracing is not None:
            stack.callback(tracing.shutdown)  # last: flushes the spans of the shutdown too
        endpoint_url = None
        credentials: dict[str, str] = {}
        if settings.demo:
            endpoint_url = await stack.enter_async_context(running_emulator())
            state.demo_endpoint = endpoint_url
            credentials = DEMO_CREDENTIALS
        if settings.pcs_retry_budget_seconds > settings.request_deadline_seconds:
            # Refused at start in production; here requests past their deadline get the
            # stale copy, or UPSTREAM_UNAVAILABLE, while the call goes on.
            log.warning(
                "PCS attempts may take %g s, beyond the %g s request deadline",
                settings.pcs_retry_budget_seconds,
                settings.request_deadline_seconds,
            )
        coordination = coordination_url(settings)
        redis = None
        if coordination is not None:
            redis = connect(coordination, settings)
            stack.push_async_callback(redis.aclose)
            state.coordination = Coordination(
                leases=Leases(redis), channels=ChangeChannels(redis, prefix=CHANGES_PREFIX)
            )
            state.coordination.channels.start()
            stack.push_async_callback(state.coordination.channels.close)
        leases = None if state.coordination is None else state.coordination.leases
        backend = cache.make_backend(settings, state.stats)
        store = CacheStore(backend, name=cache.describe(settings), stats=state.stats)
        stack.push_async_callback(store.close)
        state.store = store
        served: dict[str, RegionServices] = {}
        for wanted in region_names(settings, os.environ):
            # One client a region: its own connections, rate budget and breaker; the SDK
            # resolves each region's endpoint (or AWS_ENDPOINT_URL[_PCS] for all of them).
            client = await stack.enter_async_context(
                PcsClient.open(
                    settings,
                    endpoint_url=endpoint_url,
                    region_name=wanted,
                    credentials=credentials,
                    observer=ObservedCalls(metrics=metrics, tracer=tracer),
                    shared_tokens=None if redis is None else shared_budget(redis, settings),
                )
            )
            region = client.region
            service = ClusterService(
                client,
                store,
                settings,
                # The default region's counters are the state's, beside the store's own.
                state.stats if not served else CacheStats(),
                observer=ObservedLookups(tracer=tracer, region=region),
                leases=leases,
            )
            stack.push_async_callback(service.close)
            resources = ResourceServices(
                client, store, settings, observer=ObservedLookups(tracer=tracer, region=region)
            )
            stack.push_async_callback(resources.close)
            served[region] = RegionServices(region, client, service, resources)
        regions = state.regions = Regions(served, default=next(iter(served)))
        default = regions.get()
        state.client, state.service = default.client, default.clusters
        state.live = LiveStatus(
            settings,
            channels=None if state.coordination is None else state.coordination.channels,
            leases=leases,
        )
        stack.push_async_callback(state.live.close)
        state.on_drain.insert(0, state.live.close)  # subscriptions complete, then sockets close
        if settings.cursor_key is not None:
            state.graphql.cursors = Cursors(settings.cursor_key.get_secret_value().encode())
        state.graphql.apq = PersistedQueries(
            max_entries=settings.persisted_queries_max_entries,
            max_bytes=settings.persisted_queries_max_bytes,
            max_document_bytes=settings.persisted_query_max_document_bytes,
            shared=store if store.kind == "redis" else None,
            shared_max_bytes=settings.persisted_queries_shared_max_bytes,
        )
        metrics.watch(
            lambda: itertools.chain(
                cache_families(
                    {r.name: r.clusters.stats for r in regions},
                    state.stats,
                    store.kind,
                    lambda: store.degraded,
                ),
                upstream_families(
                    RegionBudget(r.name, r.client.limiter, r.client.breaker) for r in regions
                ),
            )
        )
        if metrics.multiprocess_dir is not None:
            mirror = asyncio.create_task(metrics.mirror_forever())
            stack.callback(metrics.close)
            stack.callback(mirror.cancel)
        if settings.graphiql_enabled:
            state.graphql.graphiql = GraphiQLPage.load(
                settings.graphiql_assets_dir,
                demo=settings.demo,
                headers=settings.graphiql_default_headers,
            )
            log.info(state.graphql.graphiql.describe())
        # What start-up made lives as long as the process: out of the collector's way,
        # so a full collection walks only what requests made since (p99 under load).
        gc.collect()
        gc.freeze()
        state.ready = True
        log.info(
            "gateway ready: PCS at %s, cache %s%s",
            ", ".join(r.client.endpoint for r in regions),
            store.name,
            " (demo emulator)" if settings.demo else "",
        )
        try:
            yield
        finally:
            state.ready = False
            state.draining = True


__all__ = ["GatewayState", "create_app", "lifespan", "region_names"]
