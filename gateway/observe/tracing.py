"""OpenTelemetry tracing: off by default, on by the standard `OTEL_*` variables.

`OTEL_TRACES_EXPORTER` names the exporters (`otlp`, `console`, or both, comma-separated);
unset, setting `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` means
`otlp`. `OTEL_SDK_DISABLED=true` turns tracing off whatever else is set. The OTLP exporter
speaks `http/protobuf` and reads its own `OTEL_EXPORTER_OTLP_*` settings (endpoint, headers,
timeout, compression); the SDK reads `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
`OTEL_TRACES_SAMPLER` and `OTEL_BSP_*`, and incoming `traceparent` headers are read with
`OTEL_PROPAGATORS` (W3C trace context and baggage by default).

Off, no tracer exists and every place that would open a span does a single `None` check.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from typing import Any

from opentelemetry import propagate
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import Span, SpanKind, Tracer

INSTRUMENTATION_NAME = "pcs-gateway"
_TRACE_HEADERS = frozenset({b"traceparent", b"tracestate", b"baggage"})
_NO_SPAN: AbstractContextManager[None] = contextlib.nullcontext()


class TracingError(ValueError):
    """An `OTEL_*` setting the gateway cannot honour; its message names the variable."""


class Tracing:
    """The gateway's tracer and the provider behind it, shut down (flushed) with the app."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self.tracer: Tracer = provider.get_tracer(INSTRUMENTATION_NAME)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Tracing | None:
        """Tracing as the `OTEL_*` variables ask for it; None when they leave it off."""
        env = os.environ if environ is None else environ
        if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            return None
        names = _exporter_names(env)
        if not names:
            return None
        provider = TracerProvider(resource=_resource(env))
        for processor in _processors(names, env):
            provider.add_span_processor(processor)
        return cls(provider)

    def shutdown(self) -> None:
        """Send the spans still buffered, then stop the exporters."""
        self.provider.shutdown()


def check_environment(environ: Mapping[str, str] | None = None) -> None:
    """Raise TracingError when the `OTEL_*` variables ask for what the gateway cannot do."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return
    if "otlp" in _exporter_names(env):
        _otlp_protocol(env)


def _otlp_protocol(env: Mapping[str, str]) -> str:
    variable = (
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
        if "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL" in env
        else "OTEL_EXPORTER_OTLP_PROTOCOL"
    )
    protocol = env.get(variable, "http/protobuf")
    if protocol != "http/protobuf":
        raise TracingError(f"{variable}: only http/protobuf is supported, not {protocol!r}")
    return protocol


def _exporter_names(env: Mapping[str, str]) -> list[str]:
    raw = env.get("OTEL_TRACES_EXPORTER")
    if raw is None:
        endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
        return ["otlp"] if endpoint else []
    names = [name.strip().lower() for name in raw.split(",") if name.strip()]
    unknown = sorted(set(names) - {"otlp", "console", "none"})
    if unknown:
        raise TracingError(
            f"OTEL_TRACES_EXPORTER: {unknown[0]!r} is not one of otlp, console, none"
        )
    return [name for name in names if name != "none"]


def _resource(env: Mapping[str, str]) -> Resource:
    # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES itself.
    defaults = {} if env.get("OTEL_SERVICE_NAME") else {"service.name": INSTRUMENTATION_NAME}
    return Resource.create(defaults)


def _processors(names: list[str], env: Mapping[str, str]) -> Iterator[SpanProcessor]:
    for name in dict.fromkeys(names):
        exporter: SpanExporter
        if name == "console":
            exporter = ConsoleSpanExporter()
        else:
            _otlp_protocol(env)
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
        yield BatchSpanProcessor(exporter)


def span(
    tracer: Tracer | None,
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: dict[str, Any] | None = None,
    context: Context | None = None,
) -> AbstractContextManager[Span | None]:
    """A span made current for the block, or nothing at all when tracing is off."""
    if tracer is None:
        return _NO_SPAN
    return tracer.start_as_current_span(name, context=context, kind=kind, attributes=attributes)


def incoming_context(headers: list[tuple[bytes, bytes]]) -> Context | None:
    """The trace context a request carries (`traceparent`...), None when it carries none."""
    carrier = {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in headers
        if name in _TRACE_HEADERS
    }
    return propagate.extract(carrier) if carrier else None
