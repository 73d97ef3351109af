"""Trace ids every process computes alike from a run's ids: the run span's ``traceparent``.

Pure functions (hashes of ids), so the decider can give a child run its parent's trace and a
worker anywhere knows the parent span of the attempt it runs; :mod:`deerflow.tracing` turns
them into OpenTelemetry spans.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

TRACEPARENT = "traceparent"
_W3C = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def _digest(text: str, chars: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:chars]


def parse_traceparent(value: object) -> tuple[str, str] | None:
    """(trace id, span id) of a valid W3C ``traceparent`` value, else ``None``."""
    match = _W3C.match(str(value).strip().lower())
    if match and set(match[1]) != {"0"} and set(match[2]) != {"0"}:
        return match[1], match[2]
    return None


def caller_traceparent(
    trigger: Mapping[str, Any] | None, traceparent: str | None = None
) -> tuple[str, str] | None:
    """(trace id, span id) the run continues, if any.

    ``traceparent`` is the run's own (a child run continues its parent's trace); otherwise a
    valid ``traceparent`` header of the trigger event.
    """
    if traceparent is not None and (own := parse_traceparent(traceparent)) is not None:
        return own
    headers = (trigger or {}).get("headers") or {}
    if not isinstance(headers, Mapping):
        return None
    for name, value in headers.items():
        if str(name).lower() == TRACEPARENT:
            return parse_traceparent(value)
    return None


def run_trace_id(
    run_id: str, trigger: Mapping[str, Any] | None, traceparent: str | None = None
) -> str:
    """The run's trace id: the caller's, else one derived from the run id (32 hex digits)."""
    caller = caller_traceparent(trigger, traceparent)
    return caller[0] if caller else _digest(f"deerflow-trace:{run_id}", 32)


def run_span_id(run_id: str) -> str:
    """The run span's id, derived from the run id (16 hex digits)."""
    return _digest(f"deerflow-run:{run_id}", 16)


def run_traceparent(
    run_id: str, trigger: Mapping[str, Any] | None, traceparent: str | None = None
) -> str:
    """The W3C ``traceparent`` of the run span: the parent of every task attempt's span."""
    return f"00-{run_trace_id(run_id, trigger, traceparent)}-{run_span_id(run_id)}-01"
