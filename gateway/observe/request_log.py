"""The request log: one structured line per HTTP request, under the request's id.

A request's id is the caller's `X-Request-ID` when that is 1 to 128 characters of letters,
digits and `._:-`, else a new random one; every response carries it back in `X-Request-ID`,
answers of the answer cache included. While a request runs, the layers below note in its
`RequestRecord` what they did (the operation, its outcome and error codes, each cluster
cache lookup, the AWS request ids of PCS calls, the regions asked; see `gateway.context`);
its line is written once the response has gone, and the GraphQL operation is counted in
the metrics.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from contextvars import Token
from dataclasses import dataclass
from typing import Any

from opentelemetry.trace import Span, SpanKind, StatusCode, Tracer
from prometheus_client import Counter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.context import RequestContext, RequestRecord, recording
from gateway.observe.logs import FixedFields, log_fields
from gateway.observe.metrics import GRAPHQL_ROUTE, QUIET_ROUTES, UNKNOWN, Metrics, route_of
from gateway.observe.request_id import REQUEST_ID_HEADER, request_id_of
from gateway.observe.tracing import Tracing, incoming_context, span

log = logging.getLogger("gateway.requests")

#: The cache outcome of an answer the answer cache sent.
ANSWER_CACHE = "answer"
_MAX_LOGGED_PATH = 200


@dataclass(slots=True)
class Observed:
    """A request under observation: when it started, its id and record, its route."""

    started: float
    request_id: bytes
    record: RequestRecord
    context: RequestContext
    token: Token[RequestRecord | None]
    route: str


async def send_server_error(send: Send) -> None:
    """The plain 500 of a request that failed before its response started."""
    await send(_SERVER_ERROR_START)
    await send(_SERVER_ERROR_BODY)


class RequestLogMiddleware:
    """Gives each request its id, its span when tracing is on, its log line and counts."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics, tracing: Tracing | None) -> None:
        self.app = app
        self.metrics = metrics
        self.tracer = None if tracing is None else tracing.tracer
        # The operation counter's children by (label, outcome): as bounded as the labels.
        self._operations: dict[tuple[str, str], Counter] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        observed = self.open(scope)
        request_id = observed.request_id
        status = 500
        response_started = False
        trace_id: str | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                headers = [
                    (name, value)
                    for name, value in message.get("headers", ())
                    if name != REQUEST_ID_HEADER
                ]
                headers.append((REQUEST_ID_HEADER, request_id))
                message = {**message, "headers": headers}
            await send(message)

        request_span = self._span(scope, observed.route, observed.record)
        try:
            with request_span as current_span:
                try:
                    await self.app(scope, receive, send_with_id)
                except Exception:
                    if not response_started:
                        # The id goes back on this answer too; the server's error layer
                        # outside logs the cause with its stack.
                        await send_server_error(send_with_id)
                    raise
                finally:
                    if current_span is not None:
                        _describe_span(current_span, observed.record, status)
                        trace_id = f"{current_span.get_span_context().trace_id:032x}"
        finally:
            self.close(scope, observed, status, trace_id)

    def open(self, scope: Scope) -> Observed:
        """Start observing an HTTP request: its id, its record (current while it runs).

        The middleware calls it; so does a layer that answers in front of it (the compiled
        lane, when tracing is off), which then sends the id back itself and calls `close`.
        """
        request_id = request_id_of(scope)
        record = RequestRecord(request_id.decode())
        context = RequestContext.of(scope)
        context.record = record
        return Observed(
            time.perf_counter(),
            request_id,
            record,
            context,
            recording(record),
            route_of(scope["path"]),
        )

    def close(
        self, scope: Scope, observed: Observed, status: int, trace_id: str | None = None
    ) -> None:
        """The request has ended with `status`: its counts and its line."""
        observed.token.var.reset(observed.token)
        seconds = time.perf_counter() - observed.started
        record = observed.record
        self._finish(scope, observed.context, record, observed.route, status, seconds, trace_id)

    def _span(
        self, scope: Scope, route: str, record: RequestRecord
    ) -> AbstractContextManager[Span | None]:
        if self.tracer is None:
            return span(None, "")
        return span(
            self.tracer,
            f"{scope['method']} {route}",
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": scope["method"],
                "http.route": route,
                "url.path": _loggable(scope["path"]),
                "pcsgw.request_id": record.request_id,
            },
            context=incoming_context(scope["headers"]),
        )

    def _finish(
        self,
        scope: Scope,
        context: RequestContext,
        record: RequestRecord,
        route: str,
        status: int,
        seconds: float,
        trace_id: str | None,
    ) -> None:
        if record.outcome is None and route == GRAPHQL_ROUTE and status >= 400:
            # Refused before any GraphQL ran: body too large, not JSON, no query, denied.
            record.outcome = "refused"
        if record.outcome is not None:
            refused = record.outcome == "refused"
            if refused and record.operation is None and record.operation_type is None:
                label = UNKNOWN  # refused before its document could be read
            else:
                # Only names of operations that ran join the label values.
                label = self.metrics.operation_label(record.operation, admit=not refused)
            key = (label, record.outcome)
            counter = self._operations.get(key)
            if counter is None:
                counter = self._operations[key] = self.metrics.graphql_operations.labels(*key)
            counter.inc()
            if record.outcome == "success":
                # Kept with a stored answer, so its hits are counted under the same name.
                context.note = record.operation
        level = logging.DEBUG if route in QUIET_ROUTES else logging.INFO
        if log.isEnabledFor(level):
            path = _loggable(scope["path"])
            _log_line(level, scope["method"], path, status, seconds, record, trace_id)


def _log_line(
    level: int,
    method: str,
    path: str,
    status: int,
    seconds: float,
    record: RequestRecord,
    trace_id: str | None,
) -> None:
    """The request's one line: the HTTP facts, then what its GraphQL operation did."""
    if not log.isEnabledFor(level):
        return
    fields: dict[str, Any] = {
        "request_id": record.request_id,
        "method": method,
        "path": path,
        "status": status,
        "duration_ms": round(seconds * 1000, 3),
    }
    if record.outcome is not None:
        fields.update(_operation_fields(record))
    if trace_id is not None:
        fields["trace_id"] = trace_id
    log_fields(log, level, f"{method} {path} {status}", fields)


def _operation_fields(record: RequestRecord) -> dict[str, Any]:
    """What the request's GraphQL operation did, as its line states it."""
    return {
        "operation": record.operation,
        "operation_type": record.operation_type,
        "outcome": record.outcome,
        "cache": record.cache_outcome(),
        "errors": record.error_codes,
        "aws_request_ids": record.aws_request_ids,
        "regions": record.regions,
    }


#: Operations whose hit lines' fixed fields are kept; past it they are made afresh.
_MAX_HIT_LINES = 1024


def hit_observer(
    metrics: Metrics, tracing: Tracing | None
) -> Callable[[Scope, int, float, bytes, str | None], None]:
    """Logs and counts an answer of the answer cache as the middleware does any other request.

    Its `operation` is the note the middleware kept with the stored answer.
    """
    tracer = None if tracing is None else tracing.tracer
    counters: dict[str, Counter] = {}  # by label: as bounded as the labels
    # By operation: what every hit line of it states after its request's own facts.
    operations: dict[str | None, FixedFields] = {}

    def observe(
        scope: Scope, status: int, seconds: float, request_id: bytes, operation: str | None
    ) -> None:
        label = metrics.operation_label(operation)
        counter = counters.get(label)
        if counter is None:
            counter = counters[label] = metrics.graphql_operations.labels(label, "success")
        counter.inc()
        trace_id = None
        if tracer is not None:
            trace_id = _hit_span(tracer, scope, status, seconds, request_id.decode(), operation)
        if not log.isEnabledFor(logging.INFO):
            return
        fixed = operations.get(operation)
        if fixed is None:
            if len(operations) >= _MAX_HIT_LINES:
                operations.clear()
            record = RequestRecord("", operation, "query", "success", lookups={ANSWER_CACHE: 1})
            fixed = operations[operation] = FixedFields(_operation_fields(record))
        method = scope["method"]
        fields = {
            "request_id": request_id.decode(),
            "method": method,
            "path": GRAPHQL_ROUTE,
            "status": status,
            "duration_ms": round(seconds * 1000, 3),
        }
        message = f"{method} {GRAPHQL_ROUTE} {status}"
        if trace_id is None:
            log_fields(log, logging.INFO, message, fields, fixed)
        else:
            log_fields(log, logging.INFO, message, {**fields, **fixed.fields, "trace_id": trace_id})

    return observe


def _hit_span(
    tracer: Tracer,
    scope: Scope,
    status: int,
    seconds: float,
    request_id: str,
    operation: str | None,
) -> str:
    """The span of an answer that has gone already, drawn over the time it took; its trace id."""
    end = time.time_ns()
    request_span = tracer.start_span(
        f"{scope['method']} {GRAPHQL_ROUTE}",
        context=incoming_context(scope["headers"]),
        kind=SpanKind.SERVER,
        start_time=end - int(seconds * 1e9),
        attributes={
            "http.request.method": scope["method"],
            "http.route": GRAPHQL_ROUTE,
            "url.path": GRAPHQL_ROUTE,
            "http.response.status_code": status,
            "pcsgw.request_id": request_id,
            "pcsgw.cache": "answer",
            "graphql.operation.type": "query",
        },
    )
    if operation is not None:
        request_span.set_attribute("graphql.operation.name", operation)
    request_span.end(end_time=end)
    return f"{request_span.get_span_context().trace_id:032x}"


def _describe_span(current_span: Span, record: RequestRecord, status: int) -> None:
    current_span.set_attribute("http.response.status_code", status)
    if record.operation is not None:
        current_span.set_attribute("graphql.operation.name", record.operation)
    if record.operation_type is not None:
        current_span.set_attribute("graphql.operation.type", record.operation_type)
    if record.outcome is not None:
        current_span.set_attribute("pcsgw.outcome", record.outcome)
    cache = record.cache_outcome()
    if cache is not None:
        current_span.set_attribute("pcsgw.cache", cache)
    if record.aws_request_ids:
        current_span.set_attribute("aws.request_ids", record.aws_request_ids)
    if status >= 500:
        current_span.set_status(StatusCode.ERROR)


def _loggable(path: str) -> str:
    """The path cut short, control characters escaped: a path never forges a log line."""
    path = path[:_MAX_LOGGED_PATH]
    return path if path.isprintable() else path.encode("unicode_escape").decode("ascii")


_SERVER_ERROR_START: Message = {
    "type": "http.response.start",
    "status": 500,
    "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"21")],
}
_SERVER_ERROR_BODY: Message = {"type": "http.response.body", "body": b"Internal Server Error"}
