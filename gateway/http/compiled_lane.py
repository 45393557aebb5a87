"""The compiled lane: a known query answered by its plan, in front of Starlette.

A plain ASGI layer right behind the answer cache (whose gate has already authenticated the
caller and spent from its rate limit). A GET or POST to `/graphql` whose document (sent as
text, by persisted-query hash or by trusted-document id) and operation name already have a
compiled plan runs by that plan here: its variables coerced per the operation, the
operation limits that read them checked, the plan executed through the services, and the
response written directly, under the same request log, metrics and span as any request
(by the steps of `RequestLogMiddleware` and `MetricsMiddleware`, called in turn; with
tracing on, those layers wrap it as they wrap Starlette, for the span). The answer's facts
are left for the answer cache, as the view leaves them.

Anything else passes on to Starlette unchanged, counted by reason: a document not compiled
yet, invalid variables, a limit refused, a batch, a body too large
or not JSON, a persisted query to register... Strawberry then answers it as the reference.
Cross-origin requests are answered too, with the headers Starlette's CORS layer gives
(its own code adds them); preflights pass on.

    app = CompiledLane(starlette_app, state=state, view=view, cors=cors)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import orjson
from graphql.execution.values import VariableValues
from starlette.applications import Starlette
from starlette.datastructures import Headers, QueryParams, State
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.routing import Router
from starlette.types import Message, Receive, Scope, Send
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.types import ExecutionResult

from gateway.context import OPERATION_NAME, AnswerFacts, RequestContext
from gateway.graphql.apq import PersistedQueryError
from gateway.graphql.compiler import CompiledOperation, Plans
from gateway.graphql.compiler.plan import Plan
from gateway.graphql.errors import INTERNAL, REQUEST_ERROR_CODES, log_errors, to_contract
from gateway.graphql.limits import fanout_refusal, lookup_refusal
from gateway.http.state import GatewayState
from gateway.http.view import (
    GRAPHQL_RESPONSE_TYPE,
    VARY,
    GraphQLView,
    answer_facts,
    cache_control,
    count_errors,
    is_request_error,
    resolve_documents,
)
from gateway.observe.metrics import MetricsMiddleware
from gateway.observe.request_id import REQUEST_ID_HEADER
from gateway.observe.request_log import RequestLogMiddleware, send_server_error

log = logging.getLogger(__name__)

_JSON = b"application/json"
_GRAPHQL_RESPONSE = GRAPHQL_RESPONSE_TYPE.encode()
_VARY = VARY.encode()
#: Sets of variable values remembered as coerced and within the limits, per document.
_MAX_REMEMBERED = 64
#: Members that name a document by reference (persisted-query hash, trusted id).
_BY_REFERENCE = ("extensions", "documentId", "id")
#: Accept values that ask for a stream (graphql-sse, multipart subscriptions).
_STREAMS = (b"text/event-stream", b"multipart/mixed")
#: Where the scope of a request the lane answers holds what `_prepare` found.
_PREPARED = "pcsgw.compiled_lane"


class _PassOn(Exception):
    """The request is not the lane's to answer; `reason` is a metric label."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class _Prepared:
    """A request the lane answers: its operation, coerced variables and plan."""

    operation_name: str | None
    variables: VariableValues
    plan: Plan
    accept: bytes
    #: The request sent an Origin: the CORS layer's own code adds its headers.
    origin: bool


class CompiledLane:
    """Answers queries whose document is compiled; passes everything else to Starlette."""

    def __init__(
        self,
        app: Starlette,
        *,
        state: GatewayState,
        view: GraphQLView,
        cors: CORSMiddleware,
        path: str = "/graphql",
    ) -> None:
        self.app = app
        #: The CORS layer as configured inside Starlette: its headers go on the lane's answers.
        self.cors = cors
        self.gateway = state
        self.view = view
        self.path = path
        plans = state.graphql.plans
        assert plans is not None  # the view makes the store
        self.plans: Plans = plans
        metrics = state.observe.metrics
        # The same request id, log line, span and HTTP counts as a request through Starlette:
        # by the same layers, wrapping the lane's answer when tracing is on (the span is
        # theirs), else by their steps called in turn.
        self._counted = MetricsMiddleware(self._serve, metrics=metrics)
        self._logged = RequestLogMiddleware(
            self._counted, metrics=metrics, tracing=state.observe.tracing
        )

    @property
    def state(self) -> State:
        """The wrapped application's state (`state.gateway` holds the long-lived parts)."""
        return self.app.state

    @property
    def router(self) -> Router:
        """The wrapped application's router (its lifespan among others)."""
        return self.app.router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        pending: list[Message] = []
        try:
            prepared = await self._prepare(scope, receive, pending)
        except _PassOn as exc:
            reason = exc.reason
            prepared = None
        if prepared is None:
            # Outside the handler: Starlette must not run with the exception still active.
            fallbacks = self.plans.stats.lane_fallbacks
            fallbacks[reason] = fallbacks.get(reason, 0) + 1
            await self.app(scope, _replay(pending, receive) if pending else receive, send)
            return
        self.plans.stats.lane_served += 1
        scope[_PREPARED] = prepared
        if self._logged.tracer is not None:
            await self._logged(scope, _replay(pending, receive), send)
            return
        observed = self._logged.open(scope)
        self.gateway.observe.metrics.in_flight.inc()
        status = 500
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status = message["status"]
                started = True
                headers = [*message["headers"], (REQUEST_ID_HEADER, observed.request_id)]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self._serve(scope, receive, send_with_id)
        except Exception:
            # Logged here with its stack, for the operator only; the client gets the plain
            # 500 the request log layer gives, and the connection stays usable.
            log.exception(
                "the compiled lane failed to answer request %s", observed.record.request_id
            )
            if not started:
                await send_server_error(send_with_id)
        finally:
            seconds = time.perf_counter() - observed.started
            self._counted.count(observed.route, scope["method"], status, seconds)
            self._logged.close(scope, observed, status)

    async def _prepare(self, scope: Scope, receive: Receive, pending: list[Message]) -> _Prepared:
        """What the lane needs to answer the request; raises _PassOn when it does not."""
        method = scope["method"]
        if method not in ("GET", "POST"):
            raise _PassOn("method")
        admission = RequestContext.of(scope).admission
        if admission is None or admission.unauthenticated is not None:
            raise _PassOn("not_admitted")
        if admission.retry_after is not None:
            raise _PassOn("not_admitted")
        if self.gateway.service is None or self.gateway.regions is None:
            raise _PassOn("starting")
        # The first of each header, as the layers inside read them.
        accept = content_type = length = None
        origin = False
        for name, value in scope["headers"]:
            if name == b"accept":
                accept = value if accept is None else accept
            elif name == b"content-type":
                content_type = value if content_type is None else content_type
            elif name == b"content-length":
                length = value if length is None else length
            elif name == b"origin":
                origin = True
        accept = accept or b""
        if any(stream in accept for stream in _STREAMS):
            raise _PassOn("stream")
        if method == "POST":
            if (content_type or b"").split(b";", 1)[0].strip().lower() != _JSON:
                raise _PassOn("media_type")
            data = await self._body(length, receive, pending)
        else:
            data = _query_params(scope["query_string"])
            named = any(name in data for name in ("query", "extensions", "documentId", "id"))
            if not named and (b"text/html" in accept or b"*/*" in accept):
                raise _PassOn("graphiql")  # as the view tells a browser's GET
        query, name = data.get("query"), data.get("operationName")
        trusted = self.gateway.graphql.trusted
        if (
            isinstance(query, str)
            and isinstance(name, str | None)
            and not any(member in data for member in _BY_REFERENCE)
            and (trusted is None or not trusted.only)
        ):
            # A document sent as text, which nothing resolves: the plan store is asked
            # first, so a request the lane does not answer costs it no more.
            compiled = self.plans.known(query, name)
            if isinstance(compiled, str):
                raise _PassOn(compiled)
            return self._planned(_request_data(data), compiled, accept, origin)
        item = _request_data(data)
        try:
            registrations = await resolve_documents(self.gateway.graphql, [item], _sent(data))
        except PersistedQueryError:
            raise _PassOn("persisted_query") from None
        if registrations:
            raise _PassOn("registration")  # registered once Strawberry has validated it
        if item.query is None:
            raise _PassOn("no_query")
        compiled = self.plans.known(item.query, item.operation_name)
        if isinstance(compiled, str):
            raise _PassOn(compiled)
        return self._planned(item, compiled, accept, origin)

    def _planned(
        self, item: GraphQLRequestData, compiled: CompiledOperation, accept: bytes, origin: bool
    ) -> _Prepared:
        """The plan for the request's variables, its limits checked."""
        plans = self.plans
        operation_name = item.operation_name
        raw = item.variables
        # Coercion and the limits read only the values sent for declared variables.
        declared = compiled.operation.variable_definitions or ()
        sent = {} if raw is None else raw
        names = [definition.variable.name.value for definition in declared]
        # Sent or not, then the value: a variable not sent takes its default, unlike null.
        key = orjson.dumps([(name in sent, sent.get(name)) for name in names])
        variables = compiled.checked.get(key)
        if variables is None:
            variables = plans.variables(compiled, raw)
            if variables is None:
                raise _PassOn("variables")  # Strawberry reports them in its words
            if self._refused(compiled, operation_name, raw):
                raise _PassOn("limits")  # Strawberry refuses it in its words
            if len(compiled.checked) >= _MAX_REMEMBERED:
                compiled.checked.clear()
            compiled.checked[key] = variables
        plan = plans.held(compiled, variables)
        if plan is None:
            raise _PassOn("new_decisions")  # compiled where the document's locations are
        name = operation_name if operation_name is not None else plans.name_of(compiled)
        return _Prepared(name, variables, plan, accept, origin)

    def _refused(
        self,
        compiled: CompiledOperation,
        operation_name: str | None,
        variables: dict[str, Any] | None,
    ) -> bool:
        """Whether the lookup or fan-out limit refuses the operation with `variables`."""
        settings = self.gateway.settings
        document = compiled.document
        return lookup_refusal(
            document, operation_name, variables, settings.lookup_limit, settings.max_batch_size
        ) is not None or (
            fanout_refusal(
                self.plans.schema, document, operation_name, variables, settings.max_fanout
            )
            is not None
        )

    async def _body(
        self, length: bytes | None, receive: Receive, pending: list[Message]
    ) -> dict[str, Any]:
        """The POST body as a JSON object, kept in `pending` for whoever reads it next."""
        limit = self.gateway.settings.max_body_bytes
        if length is not None and (not length.isdigit() or int(length) > limit):
            raise _PassOn("body_limit")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            pending.append(message)
            if message["type"] != "http.request":
                raise _PassOn("body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _PassOn("body_limit")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        pending[:] = [{"type": "http.request", "body": body, "more_body": False}]
        try:
            decoded = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise _PassOn("malformed") from None
        if isinstance(decoded, list):
            raise _PassOn("batch")
        if not isinstance(decoded, dict):
            raise _PassOn("malformed")
        return decoded

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Execute the plan and write the response as the view would have."""
        prepared: _Prepared = scope[_PREPARED]
        request_context = RequestContext.of(scope)
        request = Request(scope)
        context = self.view.new_context(request, None, request_context)
        executed = await self.plans.run(prepared.plan, prepared.variables, context, rendered=True)
        if not executed.errors and not context.stale:
            # The common answer: data alone, nothing to report, its facts for the cache.
            _record(request_context, prepared.operation_name, [], "success")
            facts = request_context.facts = context.answer_facts()
            await self._send(scope, send, prepared, request, facts, 200, {"data": executed.data})
            return
        errors = [to_contract(error) for error in executed.errors or ()]
        log_errors(errors)
        extensions: dict[str, object] | None = {"stale": context.stale} if context.stale else None
        result = ExecutionResult(data=executed.data, errors=errors or None, extensions=extensions)
        refused = is_request_error(result, errors)
        count_errors(self.gateway.observe.metrics, errors)
        _note(request_context, prepared.operation_name, result, errors)
        answer: GraphQLHTTPResponse
        if refused:
            answer = {"errors": [error.formatted for error in errors]}
        else:
            answer = {"data": result.data}
            if errors:
                answer["errors"] = [error.formatted for error in errors]
            if extensions:
                answer["extensions"] = extensions
        facts = None
        if not errors:
            facts = request_context.facts = answer_facts(context, result)
        status = 400 if refused and _GRAPHQL_RESPONSE in prepared.accept else 200
        await self._send(scope, send, prepared, request, facts, status, answer)

    async def _send(
        self,
        scope: Scope,
        send: Send,
        prepared: _Prepared,
        request: Request,
        facts: AnswerFacts | None,
        status: int,
        answer: GraphQLHTTPResponse,
    ) -> None:
        """The answer, encoded, with the headers the view and the CORS layer would give it."""
        request_context = RequestContext.of(scope)
        media_type = _GRAPHQL_RESPONSE if _GRAPHQL_RESPONSE in prepared.accept else _JSON
        body = orjson.dumps(answer)
        headers = [(b"content-length", b"%d" % len(body)), (b"content-type", media_type)]
        if scope["method"] == "GET":
            control = cache_control(request, request_context, facts)
            headers.append((b"cache-control", control.encode()))
            headers.append((b"vary", _VARY))
        if prepared.origin:
            # CORS's headers (the origin if allowed, Vary), added by the same code as inside.
            send = partial(self.cors.send, send=send, request_headers=Headers(scope=scope))
        else:
            _vary_on_origin(headers)  # what the CORS layer adds when no Origin is sent
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _note(
    request_context: RequestContext,
    name: str | None,
    result: ExecutionResult,
    errors: list[Any],
) -> None:
    """The operation's name, type, outcome and error codes, as `OperationReport` notes them."""
    codes = [str((error.extensions or {}).get("code", INTERNAL)) for error in errors]
    if not errors:
        outcome = "success"
    elif result.data is not None:
        outcome = "partial"
    elif all(code in REQUEST_ERROR_CODES for code in codes):
        outcome = "refused"
    else:
        outcome = "error"
    _record(request_context, name, codes, outcome)


def _record(
    request_context: RequestContext, name: str | None, codes: list[str], outcome: str
) -> None:
    record = request_context.record
    if record is None:
        return
    record.operation = name if name is None or OPERATION_NAME.fullmatch(name) else None
    record.operation_type = "query"
    record.error_codes = codes
    record.outcome = outcome


def _query_params(query_string: bytes) -> dict[str, Any]:
    """A GET's parameters as the view reads them: `variables` and `extensions` decoded."""
    params = dict(QueryParams(query_string.decode("latin-1")))
    for name in ("variables", "extensions"):
        value = params.get(name)
        if value is None:
            continue
        if value.strip() == "null":
            del params[name]  # as if absent, as the view reads it
        elif value:
            try:
                params[name] = orjson.loads(value)
            except orjson.JSONDecodeError:
                raise _PassOn("malformed") from None
    return params


def _request_data(data: dict[str, Any]) -> GraphQLRequestData:
    """The operation in `data`, with the types Strawberry requires; else _PassOn."""
    query = data.get("query")
    variables = data.get("variables")
    extensions = data.get("extensions")
    operation_name = data.get("operationName")
    if (
        not isinstance(query, str | None)
        or not isinstance(variables, dict | None)
        or not isinstance(extensions, dict | None)
        or not isinstance(operation_name, str | None)
    ):
        raise _PassOn("malformed")
    return GraphQLRequestData(
        query=query,
        variables=variables,
        operation_name=operation_name,
        extensions=extensions,
        protocol="http",
    )


def _sent(data: dict[str, Any]) -> Callable[[], Any]:
    async def sent() -> list[dict[str, Any]]:
        return [data]

    return sent


def _vary_on_origin(headers: list[tuple[bytes, bytes]]) -> None:
    """`Vary: Origin` added as Starlette's CORS layer adds it to an answer to a request
    without an Origin: joined to a Vary already set, else appended."""
    for index, (name, value) in enumerate(headers):
        if name == b"vary":
            headers[index] = (name, value + b", Origin")
            return
    headers.append((b"vary", b"Origin"))


def _replay(pending: list[Message], receive: Receive) -> Receive:
    """`receive` that gives the messages already read first."""
    queue = list(pending)

    async def replay() -> Message:
        if queue:
            return queue.pop(0)
        return await receive()

    return replay
