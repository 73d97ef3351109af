"""What a wait matches: durations, dotted paths, and the key both sides of a match share.

A wait for ``InvoiceApproved`` with ``match={"data.invoice_id": "params.invoice_id"}`` and an
``InvoiceApproved`` event meet under one key: the event type, the event-side paths and the
values found there (the event's at ``data.invoice_id``, the run's at ``params.invoice_id``).
Both sides are routed to the index partition of that key, so a match is one dict lookup.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import deerflow._codec as _codec
from deerflow.errors import DefinitionError

__all__ = [
    "MISSING",
    "event_key",
    "event_view",
    "match_pairs",
    "matching_topic",
    "parse_duration",
    "resolve",
]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")


def matching_topic(prefix: str) -> str:
    """The topic both sides of a match are re-keyed into, under the topics' ``prefix``."""
    return f"{prefix}.matching"


#: the run side of a match names one of these roots
RUN_ROOTS = ("params", "input", "tasks", "trigger")


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


#: what :func:`resolve` returns for a path that leads nowhere
MISSING: Any = _Missing()


def parse_duration(value: float | str | timedelta | None, what: str) -> float | None:
    """Seconds from ``30``, ``"30s"``, ``"10m"``, ``"1h"``, ``"7d"`` or a timedelta; ``None`` stays.

    Raises:
        DefinitionError: not a positive duration (``what`` names the option).
    """
    if value is None:
        return None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (found := _DURATION.match(value)) is not None:
        seconds = float(found.group(1)) * _UNITS[found.group(2) or "s"]
    else:
        raise DefinitionError(f"{what}: {value!r} is not a duration (30, '30s', '10m', '7d')")
    if seconds <= 0:
        raise DefinitionError(f"{what}: {value!r} must be positive")
    return seconds


def match_pairs(match: Mapping[str, str] | None, where: str) -> tuple[tuple[str, str], ...]:
    """``match`` as sorted (event path, run path) pairs, each checked.

    Raises:
        DefinitionError: an event path outside the event, a run path outside the run.
    """
    if match is None:
        return ()
    if not isinstance(match, Mapping):
        raise DefinitionError(f"{where}: match must be a dict of event path -> run path")
    pairs = []
    for event_path, run_path in match.items():
        if not isinstance(event_path, str) or event_path.split(".")[0] not in _EVENT_ROOTS:
            roots = ", ".join(_EVENT_ROOTS)
            raise DefinitionError(
                f"{where}: match key {event_path!r} must be a path in the event ({roots})"
            )
        if not isinstance(run_path, str) or run_path.split(".")[0] not in RUN_ROOTS:
            roots = ", ".join(RUN_ROOTS)
            raise DefinitionError(
                f"{where}: match value {run_path!r} must be a path in the run ({roots})"
            )
        pairs.append((event_path, run_path))
    return tuple(sorted(pairs))


#: the event side of a match names one of these roots (the fields of :func:`event_view`)
_EVENT_ROOTS = ("data", "id", "type", "source", "stream", "correlation_id")


def resolve(path: str, root: Mapping[str, Any]) -> Any:
    """The value at dotted ``path`` in ``root`` (dicts by key, lists by index), or MISSING."""
    value: Any = root
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return MISSING
    return value


def event_key(event_type: str, paths: tuple[str, ...], values: tuple[Any, ...]) -> str:
    """The key a wait and an event share: type, event paths and their values, as JSON."""
    return _codec.dumps([event_type, list(paths), list(values)]).decode()


def event_view(
    *,
    id: str,
    type: str,
    data: Any,
    time: datetime | float,
    source: str | None,
    **more: Any,
) -> dict[str, Any]:
    """The event as a wait's output and ``where`` see it: id, type, data, time (ISO), source."""
    if isinstance(time, int | float):
        time = datetime.fromtimestamp(time, UTC)
    return {
        "id": id,
        "type": type,
        "data": data,
        "time": time.isoformat(),
        "source": source,
        **more,
    }


def event_ts(view: Mapping[str, Any]) -> float:
    """The epoch seconds of an :func:`event_view`'s time."""
    return datetime.fromisoformat(str(view["time"])).timestamp()
