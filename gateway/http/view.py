"""The GraphQL view: Strawberry's ASGI view with the gateway's context, errors and caching.

Each step of turning a result into a response is a function below `GraphQLView`:
the error contract, telling a request error from a result, registering persisted
documents, counting errors, the media type and status, the answer's facts for the
answer cache, and the Cache-Control of a GET.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any

import orjson
from cross_web import AsyncHTTPRequestAdapter, StarletteRequestAdapter
from cross_web.exceptions import HTTPException  # what Strawberry raises to refuse a request
from graphql.error import GraphQLError
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect
from strawberry.asgi import ASGIWebSocketAdapter, GraphQL
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.http.base import BaseRequestProtocol
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.http.streaming import SSETransport
from strawberry.http.types import QueryParams
from strawberry.subscriptions import GRAPHQL_SSE_PROTOCOL, GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types import ExecutionResult

from gateway.context import AnswerFacts, RequestContext
from gateway.graphql.apq import PersistedQueries, PersistedQueryError
from gateway.graphql.compiler import CompiledExecution, Plans
from gateway.graphql.context import GatewayContext
from gateway.graphql.errors import REQUEST_ERROR_CODES, request_refusal, to_contract
from gateway.graphql.operations import OperationReport
from gateway.graphql.schema import build_schema
from gateway.http.state import GatewayState, GraphQLParts
from gateway.http.websocket import (
    UNAUTHORIZED,
    ConnectionEnds,
    OperationRefused,
    OperationScopedHandler,
)
from gateway.observe.metrics import Metrics

GRAPHQL_RESPONSE_TYPE = "application/graphql-response+json"
NO_STORE = {"cache-control": "no-store"}
#: A GET answer depends on these request headers: a browser's cache keeps one answer per
#: credential, never replaying one caller's answer (secret references and all) to another.
VARY = "accept, authorization, x-api-key"


class _ViewRequest(Request):
    """A request to the view, holding the GraphQL context `get_context` made for it."""

    graphql_context: GatewayContext | None = None


class _ViewRequestAdapter(StarletteRequestAdapter):
    """Strawberry's adapter of a request, keeping the request for `parse_http_body`."""

    def __init__(self, request: Request) -> None:
        super().__init__(request)
        self.request = request

    @property
    def content_type(self) -> str | None:
        # Media types are case-insensitive (RFC 9110); Strawberry compares them as written.
        content_type = super().content_type
        return None if content_type is None else content_type.lower()


class _TextWebSocketAdapter(ASGIWebSocketAdapter):
    """Sends each graphql-transport-ws message as a text frame, as the protocol requires."""

    async def send_json(self, message: Mapping[str, object]) -> None:
        try:
            await self.ws.send_text(orjson.dumps(message).decode())
        except WebSocketDisconnect as exc:
            raise WebSocketDisconnected from exc


class GraphQLView(GraphQL[GatewayContext, None]):
    """Strawberry's ASGI view, with the gateway's context and a fast JSON encoder."""

    request_adapter_class = _ViewRequestAdapter
    graphql_transport_ws_handler_class = OperationScopedHandler
    websocket_adapter_class = _TextWebSocketAdapter

    def __init__(self, state: GatewayState, **kwargs: Any) -> None:
        settings = state.settings
        # graphql-transport-ws and graphql-sse: the older graphql-ws protocol is not served.
        kwargs.setdefault(
            "subscription_protocols", (GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_SSE_PROTOCOL)
        )
        kwargs.setdefault(
            "max_subscriptions_per_connection", settings.live_max_subscriptions_per_connection
        )
        # A socket accepted without credential headers waits for them in connection_init:
        # no longer than a request may take to send its headers (then 4408).
        kwargs.setdefault(
            "connection_init_wait_timeout", timedelta(seconds=settings.header_timeout_seconds)
        )
        plans = state.graphql.plans = Plans(settings.compiled_plans_max_entries)
        self.gateway_schema = build_schema(
            [OperationReport, lambda: CompiledExecution(plans)], settings=settings
        )
        super().__init__(self.gateway_schema, **kwargs)
        self.stream_transport_classes_by_protocol = {
            GRAPHQL_SSE_PROTOCOL: _kept_alive_sse(settings.live_keepalive_seconds)
        }
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Strawberry's refusals (body not JSON, no query...) as GraphQL error documents."""
        if scope["type"] == "websocket" and not self.state.settings.websockets:
            # Closing before accepting makes the server answer the handshake with 403.
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        try:
            response = await self.run(_ViewRequest(scope=scope, receive=receive))
        except HTTPException as exc:
            response = JSONResponse(request_refusal(exc.status_code, exc.reason), exc.status_code)
        except PersistedQueryError as exc:
            self.state.observe.metrics.graphql_errors.labels(exc.code).inc()
            response = JSONResponse(exc.document(), exc.status, headers=NO_STORE)
        await response(scope, receive, send)

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> GatewayContext:
        context = self.new_context(request, response, RequestContext.of(request.scope))
        if isinstance(request, _ViewRequest):
            request.graphql_context = context
        return context

    async def operation_context(self, connection: GatewayContext) -> GatewayContext:
        """The context of one operation on a WebSocket: the credential checked again, the
        caller's rate limit spent, and its own deadline, loader and facts."""
        caller = connection.caller
        if (
            caller is not None
            and caller.expires_at is not None
            and time.time() > caller.expires_at + self.state.settings.oidc_leeway_seconds
        ):
            raise ConnectionEnds(UNAUTHORIZED, "The bearer token has expired.")
        budget = self.state.caller_budget
        request = connection.request
        if budget is not None and caller is not None and request is not None:
            retry_after = await budget.spend(request.scope, caller)
            if retry_after is not None:
                raise OperationRefused(
                    GraphQLError(
                        "Too many requests from this caller; retry later.",
                        extensions={"code": "THROTTLED", "retryAfterSeconds": retry_after},
                    )
                )
        facts = RequestContext(caller=caller, record=connection.request_context.record)
        assert request is not None
        return self.new_context(request, connection.response, facts)

    def new_context(
        self,
        request: Request | WebSocket,
        response: Response | WebSocket | None,
        request_context: RequestContext,
    ) -> GatewayContext:
        """The GraphQL context of one operation: the services, its deadline and facts."""
        if self.state.service is None or self.state.regions is None:
            # Listening before the lifespan has made the parts: refused, as /readyz says.
            raise HTTPException(503, "The gateway is starting; try again shortly.")
        settings = self.state.settings
        tracing = self.state.observe.tracing
        return GatewayContext(
            service=self.state.service,
            settings=settings,
            regions=self.state.regions,
            cursors=self.state.graphql.cursors,
            request=request,
            response=response,
            request_context=request_context,
            deadline=time.monotonic() + settings.request_deadline_seconds,
            tracer=None if tracing is None else tracing.tracer,
            live=self.state.live,
        )

    def count_errors(self, errors: list[GraphQLError]) -> None:
        """Count errors sent over a WebSocket by their `extensions.code`."""
        count_errors(self.state.observe.metrics, errors)

    def should_render_graphql_ide(self, request: BaseRequestProtocol) -> bool:
        """GraphiQL for a browser's plain GET; a document named by hash or id is an operation."""
        params = request.query_params
        return super().should_render_graphql_ide(request) and not any(
            name in params for name in ("extensions", "documentId", "id")
        )

    async def render_graphql_ide(self, request: Request) -> Response:
        """The gateway's GraphiQL page (local assets, strict CSP) instead of Strawberry's."""
        graphiql = self.state.graphql.graphiql
        if graphiql is None:
            return PlainTextResponse("Not Found", status_code=404)
        return graphiql.render(request)

    def encode_json(self, data: object) -> bytes:
        return orjson.dumps(data)

    def parse_query_params(self, params: QueryParams) -> dict[str, Any]:
        """A GET's parameters; `variables` or `extensions` of `null` are as if absent."""
        kept = {name: value for name, value in params.items() if not _is_null(name, value)}
        return super().parse_query_params(kept)

    def decode_json(self, data: str | bytes) -> object:
        # orjson refuses bytes that are not UTF-8 with a JSONDecodeError (a 400), where the
        # standard decoder's guess at UTF-16/32 fails with an error Strawberry does not catch.
        decoded = orjson.loads(data)
        if not isinstance(decoded, dict | list):
            raise HTTPException(400, "The request body must be a JSON object.")
        return decoded

    async def parse_http_body(
        self, request: AsyncHTTPRequestAdapter
    ) -> GraphQLRequestData | list[GraphQLRequestData]:
        """The request's operation, its document found by hash for persisted queries."""
        data = await super().parse_http_body(request)
        items = data if isinstance(data, list) else [data]
        registrations = await resolve_documents(
            self.state.graphql, items, lambda: raw_items(request)
        )
        if isinstance(request, _ViewRequestAdapter):
            RequestContext.of(request.request.scope).registrations = registrations
        return data

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        """The result in the error contract, with GraphQL over HTTP's status codes.

        A document that does not parse or validate is a request error: no `data`, and
        HTTP 400 for clients that accept application/graphql-response+json. A failing
        field is a partial result: HTTP 200 with `data` and `errors`.
        """
        errors = contract_errors(result)
        refused = is_request_error(result, errors)
        request_context = RequestContext.of(request.scope)
        if not refused:
            await register_documents(self.state.graphql.apq, request_context)
        count_errors(self.state.observe.metrics, errors)
        graphql_context = request.graphql_context if isinstance(request, _ViewRequest) else None
        response = None if graphql_context is None else graphql_context.response
        sub_response = response if isinstance(response, Response) else None
        set_status(request, sub_response, refused=refused)
        if refused:
            return {"errors": [error.formatted for error in errors]}
        answer: GraphQLHTTPResponse = {"data": result.data}
        if errors:
            answer["errors"] = [error.formatted for error in errors]
        if result.extensions:
            answer["extensions"] = result.extensions
        facts = None
        if graphql_context is not None and not errors:
            facts = answer_facts(graphql_context, result)
            request_context.facts = facts
        if sub_response is not None and request.method == "GET":
            sub_response.headers["cache-control"] = cache_control(request, request_context, facts)
            sub_response.headers["vary"] = VARY
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


async def raw_items(request: AsyncHTTPRequestAdapter) -> list[dict[str, Any]]:
    """The request's operations as sent, with members Strawberry drops (`documentId`, `id`)."""
    if request.method == "GET":
        return [dict(request.query_params)]
    decoded = orjson.loads(await request.get_body())
    items = decoded if isinstance(decoded, list) else [decoded]
    return [item if isinstance(item, dict) else {} for item in items]


async def resolve_documents(
    parts: GraphQLParts,
    items: list[GraphQLRequestData],
    raw: Callable[[], Awaitable[list[dict[str, Any]]]],
) -> tuple[tuple[str, str], ...]:
    """Fill in each operation's document named by trusted id or persisted-query hash.

    `raw` gives the operations as sent (read only when one names its document by id).
    Returns the persisted-query (hash, document) pairs to register once they validate;
    raises PersistedQueryError for a document refused or not found.
    """
    trusted = parts.trusted
    if trusted is not None:
        sent = None
        if any(item.query is None for item in items):
            sent = await raw()
        for index, item in enumerate(items):
            trusted.resolve(item, sent[index] if sent is not None and index < len(sent) else None)
    pending = []
    apq = parts.apq
    if apq is not None:
        for item in items:
            registration = await apq.apply(item)
            if registration is not None:
                pending.append(registration)
    if trusted is not None:
        for item in items:
            trusted.admit(item.query)
    return tuple(pending)


def _kept_alive_sse(interval: float) -> type[SSETransport]:
    """graphql-sse with a comment every `interval` seconds, so proxies keep the stream open."""

    class KeptAliveSSE(SSETransport):
        def __init__(self) -> None:
            super().__init__(heartbeat_interval=interval)

    return KeptAliveSSE


def _is_null(name: str, value: str | None) -> bool:
    return name in ("variables", "extensions") and (value or "").strip() == "null"


def contract_errors(result: ExecutionResult) -> list[GraphQLError]:
    """The result's errors in the error contract.

    The schema's `ErrorContract` extension rewrites errors when the operation ends, but a
    document that does not parse is raised through the parser cache and the extensions:
    Strawberry builds that result after they have exited, so its error would leave without
    `extensions.code`. Rewriting is idempotent, so errors the extension saw pass unchanged.
    """
    return [to_contract(error) for error in result.errors or []]


def is_request_error(result: ExecutionResult, errors: list[GraphQLError]) -> bool:
    """Whether the document or its variables failed before execution: no data at all."""
    return (
        result.data is None
        and bool(errors)
        and all((error.extensions or {}).get("code") in REQUEST_ERROR_CODES for error in errors)
    )


async def register_documents(apq: PersistedQueries | None, context: RequestContext) -> None:
    """Register the persisted documents sent with hashes, now that they have validated."""
    if apq is None:
        return
    for sha256, document in context.registrations:
        await apq.register(sha256, document)


def count_errors(metrics: Metrics, errors: list[GraphQLError]) -> None:
    """Count each error by its `extensions.code`."""
    for error in errors:
        code = str((error.extensions or {}).get("code", "INTERNAL_SERVER_ERROR"))
        metrics.graphql_errors.labels(code).inc()


def set_status(request: Request, response: Response | None, *, refused: bool) -> None:
    """GraphQL over HTTP: its media type for clients that accept it, then 400 for a refusal."""
    if response is None or GRAPHQL_RESPONSE_TYPE not in request.headers.get("accept", ""):
        return
    response.media_type = GRAPHQL_RESPONSE_TYPE
    if refused:
        response.status_code = 400


def answer_facts(context: GatewayContext, result: ExecutionResult) -> AnswerFacts | None:
    """The clusters an answer without errors holds, and whether it may be reused.

    Not reusable when stale, refreshed, or with anything in `extensions`.
    """
    facts = context.answer_facts()
    if facts is not None:
        facts.reusable = facts.reusable and not result.extensions
    return facts


def cache_control(request: Request, context: RequestContext, facts: AnswerFacts | None) -> str:
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
    private = (
        (context.caller is not None and context.caller.subject is not None)
        or "authorization" in headers
        or "x-api-key" in headers
        or "cookie" in headers
    )
    return f"{'private' if private else 'public'}, max-age={max_age}"
