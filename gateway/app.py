"""The Starlette application: routes, and the lifespan that makes the long-lived parts once."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import gc
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from cross_web import AsyncHTTPRequestAdapter
from cross_web.exceptions import HTTPException  # what Strawberry raises to refuse a request
from opentelemetry.sdk.trace import TracerProvider
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.http.base import BaseRequestProtocol
from strawberry.types import ExecutionResult

from gateway.config import Settings
from gateway.demo import DEMO_CREDENTIALS, DEMO_REGION, running_emulator
from gateway.graphiql import GraphiQLPage
from gateway.graphql.apq import PersistedQueries, PersistedQueryError
from gateway.graphql.context import GatewayContext
from gateway.graphql.errors import request_refusal, to_contract
from gateway.graphql.operations import OperationReport
from gateway.graphql.schema import build_schema
from gateway.http.answer_cache import (
    CALLER_KEY,
    FACTS_KEY,
    AnswerCache,
    AnswerFacts,
    answer_families,
)
from gateway.http.body_limit import BodyLimitMiddleware
from gateway.observe.metrics import (
    CONTENT_TYPE,
    Metrics,
    MetricsMiddleware,
    cache_families,
    upstream_families,
)
from gateway.observe.request_log import RequestLogMiddleware, hit_observer, request_id_of
from gateway.observe.tracing import Tracing
from gateway.pcs.client import PcsClient
from gateway.security.layers import security_middleware
from gateway.service import store as cache
from gateway.service.clusters import ClusterService
from gateway.service.store import CacheStats, CacheStore

log = logging.getLogger(__name__)

GRAPHQL_RESPONSE_TYPE = "application/graphql-response+json"
NO_STORE = {"cache-control": "no-store"}
#: Persisted-query documents of the request being served, registered once they validate.
_REGISTRATIONS: contextvars.ContextVar[tuple[tuple[str, str], ...]] = contextvars.ContextVar(
    "persisted_query_registrations", default=()
)
#: Codes of errors that fail the whole request before execution.
REQUEST_ERROR_CODES = frozenset({"GRAPHQL_PARSE_FAILED", "GRAPHQL_VALIDATION_FAILED"})


@dataclass
class GatewayState:
    """The long-lived parts, made in the lifespan and handed to each request."""

    settings: Settings
    stats: CacheStats = field(default_factory=CacheStats)
    service: ClusterService | None = None
    store: CacheStore | None = None
    ready: bool = False
    draining: bool = False
    demo_endpoint: str | None = None
    metrics: Metrics | None = None
    client: PcsClient | None = None
    graphiql: GraphiQLPage | None = None
    persisted: PersistedQueries | None = None
    tracing: Tracing | None = None


class GraphQLEndpoint(GraphQL[GatewayContext, None]):
    """Strawberry's ASGI view, with the gateway's context and a fast JSON encoder."""

    def __init__(self, state: GatewayState, **kwargs: Any) -> None:
        super().__init__(build_schema([OperationReport], settings=state.settings), **kwargs)
        self.state = state

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> GatewayContext:
        if self.state.service is None:
            # Listening before the lifespan has made the parts: refused, as /readyz says.
            raise HTTPException(503, "The gateway is starting; try again shortly.")
        settings = self.state.settings
        context = GatewayContext(
            service=self.state.service,
            settings=settings,
            request=request,
            response=response,
            deadline=time.monotonic() + settings.request_deadline_seconds,
            tracer=None if self.state.tracing is None else self.state.tracing.tracer,
        )
        if isinstance(request, Request):
            request.state.graphql_response = response
            request.state.graphql_context = context
        return context

    def should_render_graphql_ide(self, request: BaseRequestProtocol) -> bool:
        """GraphiQL for a browser's plain GET; a persisted query by hash is an operation."""
        return super().should_render_graphql_ide(request) and (
            request.query_params.get("extensions") is None
        )

    async def render_graphql_ide(self, request: Request) -> Response:
        """The gateway's GraphiQL page (local assets, strict CSP) instead of Strawberry's."""
        if self.state.graphiql is None:
            return PlainTextResponse("Not Found", status_code=404)
        return self.state.graphiql.render(request)

    def encode_json(self, data: object) -> bytes:
        return orjson.dumps(data)

    def decode_json(self, data: str | bytes) -> object:
        # orjson refuses bytes that are not UTF-8 with a JSONDecodeError (a 400), where the
        # standard decoder's guess at UTF-16/32 fails with an error Strawberry does not catch.
        decoded = orjson.loads(data)
        if not isinstance(decoded, dict | list):
            raise HTTPException(400, "The request body must be a JSON object.")
        return decoded

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Strawberry's refusals (body not JSON, no query...) as GraphQL error documents."""
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        try:
            response = await self.run(Request(scope=scope, receive=receive))
        except HTTPException as exc:
            response = JSONResponse(request_refusal(exc.status_code, exc.reason), exc.status_code)
        except PersistedQueryError as exc:
            if self.state.metrics is not None:
                self.state.metrics.graphql_errors.labels(exc.code).inc()
            response = JSONResponse(exc.document(), exc.status, headers=NO_STORE)
        await response(scope, receive, send)

    async def parse_http_body(
        self, request: AsyncHTTPRequestAdapter
    ) -> GraphQLRequestData | list[GraphQLRequestData]:
        """The request's operation, its document found by hash for persisted queries."""
        data = await super().parse_http_body(request)
        persisted = self.state.persisted
        if persisted is not None:
            pending = []
            for item in data if isinstance(data, list) else (data,):
                registration = await persisted.apply(item)
                if registration is not None:
                    pending.append(registration)
            _REGISTRATIONS.set(tuple(pending))
        return data

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        """The result in the error contract, with GraphQL over HTTP's status codes.

        A document that does not parse or validate is a request error: no `data`, and
        HTTP 400 for clients that accept application/graphql-response+json. A failing
        field is a partial result: HTTP 200 with `data` and `errors`.
        """
        errors_ = [to_contract(error) for error in result.errors or []]
        refused = (
            result.data is None
            and errors_
            and all((e.extensions or {}).get("code") in REQUEST_ERROR_CODES for e in errors_)
        )
        registrations = _REGISTRATIONS.get()
        if registrations and self.state.persisted is not None and not refused:
            for sha256, document in registrations:
                await self.state.persisted.register(sha256, document)
        if errors_ and self.state.metrics is not None:
            for error in errors_:
                code = str((error.extensions or {}).get("code", "INTERNAL_SERVER_ERROR"))
                self.state.metrics.graphql_errors.labels(code).inc()
        sub_response: Response | None = getattr(request.state, "graphql_response", None)
        strict = GRAPHQL_RESPONSE_TYPE in request.headers.get("accept", "")
        if sub_response is not None and strict:
            sub_response.media_type = GRAPHQL_RESPONSE_TYPE
        if refused:
            if sub_response is not None and strict:
                sub_response.status_code = 400
            return {"errors": [e.formatted for e in errors_]}
        answer: GraphQLHTTPResponse = {"data": result.data}
        if errors_:
            answer["errors"] = [e.formatted for e in errors_]
        if result.extensions:
            answer["extensions"] = result.extensions
        context: GatewayContext | None = getattr(request.state, "graphql_context", None)
        facts = None
        if context is not None and not errors_:
            # For the answer cache in front: the clusters this answer holds, and whether
            # it may be reused (not stale, not refreshed, nothing in extensions).
            facts = context.answer_facts()
            if facts is not None:
                facts.reusable = facts.reusable and not result.extensions
                request.scope.setdefault("state", {})[FACTS_KEY] = facts
        if sub_response is not None and request.method == "GET":
            sub_response.headers["cache-control"] = _cache_control(request, facts)
            sub_response.headers["vary"] = "accept"
        return answer

    def create_response(
        self,
        response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse],
        sub_response: Response,
    ) -> Response:
        response = Response(
            self.encode_json(response_data),
            status_code=sub_response.status_code or 200,
            media_type=sub_response.media_type or "application/json",
        )
        response.headers.raw.extend(
            (k, v)
            for k, v in sub_response.headers.raw
            if k not in (b"content-type", b"content-length")
        )
        response.background = sub_response.background
        return response


def _cache_control(request: Request, facts: AnswerFacts | None) -> str:
    """Cache-Control of a GET answer: reusable while its clusters are fresh, else no-store.

    `private` when the answer may depend on who asks (credentials sent, a caller verified),
    so shared caches keep it for that caller only; `public` otherwise, for a CDN.
    """
    if facts is None or not facts.reusable:
        return "no-store"
    max_age = int(facts.fresh_until - time.time())
    if max_age <= 0:
        return "no-store"
    headers = request.headers
    caller = request.scope.get("state", {}).get(CALLER_KEY)
    private = (
        getattr(caller, "subject", None) is not None
        or "authorization" in headers
        or "x-api-key" in headers
        or "cookie" in headers
    )
    return f"{'private' if private else 'public'}, max-age={max_age}"


def create_app(settings: Settings, *, tracer_provider: TracerProvider | None = None) -> AnswerCache:
    """The gateway as an ASGI application: the answer cache in front of Starlette.

    Tracing follows the `OTEL_*` variables unless a `tracer_provider` is given.
    """
    state = GatewayState(settings=settings)
    metrics = Metrics(max_operation_names=settings.metrics_max_operation_names)
    state.metrics = metrics
    tracing = (
        Tracing(tracer_provider) if tracer_provider is not None else Tracing.from_environment()
    )
    state.tracing = tracing
    tracer = None if tracing is None else tracing.tracer
    graphql = GraphQLEndpoint(
        state,
        graphql_ide="graphiql" if settings.graphiql_enabled else None,
        allow_queries_via_get=True,
        allowed_origins=settings.cors_allow_origins,
    )

    async def graphiql_asset(request: Request) -> Response:
        if state.graphiql is None:
            return PlainTextResponse("Not Found", status_code=404)
        return state.graphiql.asset(request)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def metrics_route(request: Request) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    async def readyz(request: Request) -> Response:
        checks: dict[str, str] = {}
        if state.store is not None:
            checks["cache"] = "ok" if await state.store.ping() else "degraded"
        checks["pcsClient"] = "ok" if state.service is not None else "missing"
        if state.client is not None and state.client.breaker is not None:
            # Reported, never a reason for 503: a PCS outage must not pull every replica.
            checks["pcsBreaker"] = state.client.breaker.state.value
        serving = state.ready and not state.draining and state.service is not None
        status = "draining" if state.draining else "ready" if serving else "starting"
        body = {"status": status, "checks": checks}
        return JSONResponse(body, status_code=200 if serving else 503)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            if tracing is not None:
                stack.callback(tracing.shutdown)  # last: flushes the spans of the shutdown too
            endpoint_url = None
            credentials: dict[str, str] = {}
            if settings.demo:
                endpoint_url = await stack.enter_async_context(running_emulator())
                state.demo_endpoint = endpoint_url
                credentials = DEMO_CREDENTIALS
            backend = cache.make_backend(settings, state.stats)
            store = CacheStore(backend, name=cache.describe(settings), stats=state.stats)
            stack.push_async_callback(store.close)
            client = await stack.enter_async_context(
                PcsClient.open(
                    settings,
                    endpoint_url=endpoint_url,
                    region_name=DEMO_REGION if settings.demo else None,
                    credentials=credentials,
                    metrics=metrics,
                    tracer=tracer,
                )
            )
            state.store = store
            state.client = client
            state.service = ClusterService(client, store, settings, state.stats, tracer=tracer)
            state.persisted = PersistedQueries(
                max_entries=settings.persisted_queries_max_entries,
                shared=store if store.kind == "redis" else None,
            )
            stack.push_async_callback(state.service.close)
            metrics.watch(
                lambda: itertools.chain(
                    cache_families(state.stats, store.kind, lambda: store.degraded),
                    upstream_families(client.limiter, client.breaker),
                )
            )
            if metrics.multiprocess_dir is not None:
                mirror = asyncio.create_task(metrics.mirror_forever())
                stack.callback(metrics.close)
                stack.callback(mirror.cancel)
            if settings.graphiql_enabled:
                state.graphiql = GraphiQLPage.load(
                    settings.graphiql_assets_dir,
                    demo=settings.demo,
                    headers=settings.graphiql_default_headers,
                )
                log.info(state.graphiql.describe())
            # What start-up made lives as long as the process: out of the collector's way,
            # so a full collection walks only what requests made since (p99 under load).
            gc.collect()
            gc.freeze()
            state.ready = True
            log.info(
                "gateway ready: PCS at %s, cache %s%s",
                client.endpoint,
                store.name,
                " (demo emulator)" if settings.demo else "",
            )
            try:
                yield
            finally:
                state.ready = False
                state.draining = True

    app = Starlette(
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics_route, methods=["GET"]),
            Route("/graphql/assets/{path:path}", graphiql_asset, methods=["GET"]),
        ],
        middleware=[
            Middleware(RequestLogMiddleware, metrics=metrics, tracing=tracing),
            Middleware(MetricsMiddleware, metrics=metrics),
            *security_middleware(settings),
            Middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes),
        ],
        lifespan=lifespan,
    )
    app.state.gateway = state
    answers = AnswerCache(
        app,
        max_entries=settings.answer_cache_max_entries,
        max_bytes=settings.answer_cache_max_bytes,
        max_body_bytes=settings.max_body_bytes,
        request_id=request_id_of,
    )
    metrics.watch(lambda: answer_families(answers))
    answers.observers.append(_count_in(metrics))
    answers.observers.append(hit_observer(metrics, tracing))
    return answers


def _count_in(metrics: Metrics) -> Callable[[Scope, int, float], None]:
    """Counts answers from the answer cache as the HTTP metrics count every other request."""
    requests: dict[tuple[str, int], Any] = {}
    latency = metrics.latency.labels("/graphql")

    def count(scope: Scope, status: int, seconds: float) -> None:
        key = (scope["method"], status)
        counter = requests.get(key)
        if counter is None:
            counter = requests[key] = metrics.requests.labels("/graphql", key[0], str(status))
        counter.inc()
        latency.observe(seconds)

    return count


__all__ = ["GatewayState", "create_app", "orjson"]
