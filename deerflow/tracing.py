"""Importable from here too: it lives in :mod:`deerflow.observability.tracing`."""

from deerflow.observability.tracing import (
    TRACEPARENT,
    TRACING,
    RunTracer,
    TracingHooks,
    TracingPlugin,
    caller_traceparent,
    current_traceparent,
    instrument,
    parse_traceparent,
    refresh_provider,
    run_span_id,
    run_trace_id,
    run_traceparent,
    traced,
)

__all__ = [
    "TRACEPARENT",
    "TRACING",
    "RunTracer",
    "TracingHooks",
    "TracingPlugin",
    "caller_traceparent",
    "current_traceparent",
    "instrument",
    "parse_traceparent",
    "refresh_provider",
    "run_span_id",
    "run_trace_id",
    "run_traceparent",
    "traced",
]
