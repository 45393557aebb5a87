"""Observers of the data path: PCS calls and cluster lookups into metrics, spans and the log.

`ObservedCalls` implements the PCS client's `UpstreamObserver`, `ObservedLookups` the
cluster service's `LookupObserver`; either works without metrics or tracing. Both note the
region they serve in the request's record; the metrics label calls by it, which stays
bounded because clients exist only for the regions configured.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from types import TracebackType

from opentelemetry.trace import Span, SpanKind, StatusCode, Tracer

from gateway.context import note_lookup, note_region, note_upstream
from gateway.observe.metrics import OTHER, Metrics
from gateway.observe.tracing import span
from gateway.pcs.observer import OUTCOMES, CallResult, CallTarget
from gateway.service.observer import CacheRead, NoLookupObserver


def outcome_label(outcome: str) -> str:
    """A call's outcome as a label: bounded to the outcomes the client names, else `other`."""
    return outcome if outcome in OUTCOMES else OTHER


class ObservedCalls:
    """PCS calls counted and timed by operation and outcome, spanned, noted in the request."""

    def __init__(self, *, metrics: Metrics | None = None, tracer: Tracer | None = None) -> None:
        self._metrics = metrics
        self._tracer = tracer

    def call(
        self, operation: str, target: CallTarget, identifier: str, resource: str | None = None
    ) -> _ObservedCall:
        return _ObservedCall(self, operation, target, identifier, resource)

    def attempted(self, operation: str, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.upstream_attempts.labels(operation, outcome_label(outcome)).inc()

    def _finished(
        self, operation: str, target: CallTarget, result: CallResult, current: Span | None
    ) -> None:
        note_region(target.region)
        note_upstream(result.request_id)
        label = outcome_label(result.outcome)
        if self._metrics is not None:
            self._metrics.upstream_calls.labels(operation, label, target.region).inc()
            self._metrics.upstream_latency.labels(operation, target.region).observe(result.seconds)
        if current is None:
            return
        if result.error is not None:
            current.set_status(StatusCode.ERROR, result.error)
            current.set_attribute("error.type", label)
        if result.request_id is not None:
            current.set_attribute("aws.request_id", result.request_id)
        if result.http_status is not None:
            current.set_attribute("http.response.status_code", result.http_status)


class _ObservedCall:
    """One call: its span (when tracing) open for the block, its report to the observer."""

    __slots__ = (
        "_calls",
        "_identifier",
        "_opened",
        "_operation",
        "_resource",
        "_span",
        "_target",
    )

    def __init__(
        self,
        calls: ObservedCalls,
        operation: str,
        target: CallTarget,
        identifier: str,
        resource: str | None,
    ) -> None:
        self._calls = calls
        self._operation = operation
        self._target = target
        self._identifier = identifier
        self._resource = resource
        self._opened: AbstractContextManager[Span | None] | None = None
        self._span: Span | None = None

    def __enter__(self) -> _ObservedCall:
        tracer = self._calls._tracer
        if tracer is not None:
            attributes = {
                "rpc.system": "aws-api",
                "rpc.service": "PCS",
                "rpc.method": self._operation,
                "cloud.region": self._target.region,
                "server.address": self._target.address,
            }
            if self._identifier:
                attributes["aws.pcs.cluster_identifier"] = self._identifier
            if self._resource is not None:
                attributes["aws.pcs.resource_identifier"] = self._resource
            self._opened = span(
                tracer, f"PCS.{self._operation}", kind=SpanKind.CLIENT, attributes=attributes
            )
            self._span = self._opened.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        if self._opened is None:
            return None
        return self._opened.__exit__(exc_type, exc, traceback)

    def finished(self, result: CallResult) -> None:
        self._calls._finished(self._operation, self._target, result, self._span)


class ObservedLookups:
    """One region's lookups noted in the request record; cache reads spanned when tracing."""

    def __init__(self, *, tracer: Tracer | None = None, region: str = "") -> None:
        self._tracer = tracer
        self._region = region

    def looked_up(self, outcome: str, aws_request_id: str | None = None) -> None:
        note_region(self._region)
        note_lookup(outcome, aws_request_id)

    def reading(self, backend: str) -> AbstractContextManager[CacheRead]:
        if self._tracer is None:
            return _UNTRACED_READ
        return _TracedRead(self._tracer, backend)


_UNTRACED_READ = NoLookupObserver().reading("")


class _TracedRead:
    """The `cache.lookup` span of one read, with the backend and what the read found."""

    __slots__ = ("_opened", "_span")

    def __init__(self, tracer: Tracer, backend: str) -> None:
        self._opened = span(tracer, "cache.lookup", attributes={"pcsgw.cache.backend": backend})
        self._span: Span | None = None

    def __enter__(self) -> _TracedRead:
        self._span = self._opened.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        return self._opened.__exit__(exc_type, exc, traceback)

    def found(self, outcome: str) -> None:
        if self._span is not None:
            self._span.set_attribute("pcsgw.cache.outcome", outcome)
