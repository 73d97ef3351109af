"""Where a publish happens, and the event it makes from what the caller passed.

An event published inside a task attempt or an event handler is tied to it: its correlation id
is the run's (or the handled event's), its causation id is the attempt key (or the handled
event's id), and its id is derived from the attempt's idempotency key and the event's rank
among the events that attempt published. A redelivered attempt publishes the same ids, and the
store keeps the first copy only.
"""

from __future__ import annotations

import contextvars
import itertools
import os
import socket
import threading
import uuid
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

import deerflow._codec as _codec
from deerflow.eventstore._store_model import StoredEvent, derived_id, utcnow
from deerflow.runtime.integration import current_task

_KNOWN = frozenset(
    {
        "id",
        "type",
        "data",
        "payload",
        "stream",
        "timestamp",
        "correlation_id",
        "causation_id",
        "metadata",
        "source",
    }
)
PROCESS = f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class PublishScope:
    """The task attempt or handled event that events published right now belong to.

    Attributes:
        seed: stable across redeliveries (an idempotency key); event ids derive from it.
        correlation_id: inherited by the events published here.
        causation_id: what caused them (attempt key, handled event id).
        source: who publishes (for tracing).
        store: the store ``publish_event`` uses here when given none.
        after: (topic, partition, offset) of the handled event: the store reads at least
            that far before appending, so it knows the stream's version without waiting.
    """

    seed: str
    correlation_id: str | None
    causation_id: str | None
    source: str
    store: Any = None
    after: tuple[str, int, int] | None = None
    _ranks: itertools.count[int] = field(default_factory=itertools.count)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def next_id(self) -> str:
        """The id of the next event published in this scope."""
        with self._lock:
            return derived_id(self.seed, next(self._ranks))


current_scope: contextvars.ContextVar[PublishScope | None] = contextvars.ContextVar(
    "deerflow_publish_scope", default=None
)
"""Set while an event handler runs (by :mod:`deerflow.choreography`)."""

# One scope per task attempt execution (a TaskContext), so ranks count from 0 in each.
_task_scopes: weakref.WeakKeyDictionary[Any, PublishScope] = weakref.WeakKeyDictionary()
_task_lock = threading.Lock()


def scope_now() -> PublishScope | None:
    """The scope of the running event handler, else of the running task attempt, else None."""
    scope = current_scope.get()
    if scope is not None:
        return scope
    # Imported here: the engine imports the event store package while it loads.

    ctx = current_task.get()
    if ctx is None:
        return None
    with _task_lock:
        scope = _task_scopes.get(ctx)
        if scope is None:
            scope = _task_scopes[ctx] = PublishScope(
                seed=ctx.idempotency_key,
                correlation_id=ctx.correlation_id,
                causation_id=ctx.attempt_key,
                source=f"task:{ctx.workflow}/{ctx.task_id}@{PROCESS}",
            )
    return scope


@dataclass(frozen=True)
class Overrides:
    """What the caller of ``publish``/``append`` set explicitly (wins over everything)."""

    stream: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    id: str | None = None


def draft(event: Any, data: Any, scope: PublishScope | None, given: Overrides) -> StoredEvent:
    """The event to store for ``publish(event, data)``, before it gets its sequence number.

    ``event`` is a dict in the spec's shape (``type``, ``payload``/``data``, ``timestamp``,
    optional ``stream``/``id``/``correlation_id``/``causation_id``/``metadata``; other keys go
    to ``metadata``), a pydantic model (a :class:`StoredEvent`, or any model: its ``type``
    field or class name is the type, its fields the data), or an event type name with ``data``.
    """
    fields = _fields(event, data)
    if not isinstance(fields.get("type"), str) or not fields["type"]:
        raise ValueError(f"an event needs a non-empty string 'type', got {fields.get('type')!r}")
    event_id = given.id or fields.get("id") or (scope.next_id() if scope else uuid.uuid4().hex)
    correlation = (
        given.correlation_id
        or fields.get("correlation_id")
        or (scope.correlation_id if scope else None)
        or str(event_id)
    )
    causation = (
        given.causation_id or fields.get("causation_id") or (scope.causation_id if scope else None)
    )
    return StoredEvent(
        id=str(event_id),
        type=fields["type"],
        data=_codec.to_json_value(fields.get("data")),
        stream=str(given.stream or fields.get("stream") or correlation),
        timestamp=_timestamp(fields.get("timestamp")),
        correlation_id=str(correlation),
        causation_id=causation,
        source=fields.get("source") or (scope.source if scope else PROCESS),
        metadata=_codec.to_json_value(fields.get("metadata") or {}),
    )


def _fields(event: Any, data: Any) -> dict[str, Any]:
    if isinstance(event, str):
        return {"type": event, "data": data}
    if isinstance(event, StoredEvent):
        return event.model_dump(exclude={"partition", "offset", "sequence", "v"})
    if isinstance(event, BaseModel):
        dumped = event.model_dump(mode="json")
        return {"type": dumped.pop("type", None) or type(event).__name__, "data": dumped}
    if isinstance(event, Mapping):
        fields = {k: v for k, v in event.items() if k in _KNOWN}
        extra = {str(k): v for k, v in event.items() if k not in _KNOWN}
        if "data" not in fields:
            fields["data"] = fields.pop("payload", data)
        fields.pop("payload", None)
        if extra:
            fields["metadata"] = {**extra, **(fields.get("metadata") or {})}
        return fields
    raise TypeError(
        f"cannot publish a {type(event).__name__}: pass a dict with a 'type', "
        "a pydantic model, or an event type and its data"
    )


def _timestamp(value: Any) -> datetime:
    if value is None:
        return utcnow()
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise TypeError(f"an event timestamp must be a datetime, got {type(value).__name__}")
    # The spec writes datetime.utcnow(): a naive time is taken as UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
