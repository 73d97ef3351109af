"""Stored domain events: the model, and how one log record holds one or several of them.

A record of an event topic holds one *unit*: a single event (the JSON of :class:`StoredEvent`),
or, for an append of several events to one stream, a batch object
``{"type": "deerflow.batch", "stream": ..., "events": [...]}`` so the batch lands atomically.
Records written by other producers are read leniently: any JSON object with a string ``type``
is an event (a structured CloudEvent too, see :mod:`._store_cloudevents`); a missing ``id`` is
derived from the record's position (so it is stable), the
stream defaults to the record key, and ``data`` (or ``payload``) is the body.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

import deerflow._codec as _codec
from deerflow.eventstore import _store_cloudevents
from deerflow.log.base import Headers, Record

SCHEMA_VERSION = 1
BATCH_TYPE = "deerflow.batch"
_ID_NAMESPACE = uuid.UUID("5f0c2a8e-59c4-4c1e-9a57-5d1a3e6f3b21")


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def derived_id(seed: str, n: int) -> str:
    """A deterministic event id: the ``n``-th event published under ``seed``.

    Publishing again under the same seed (a redelivered task attempt, a redelivered event
    handled again) yields the same ids, which is what makes such publishes idempotent.
    """
    return str(uuid.uuid5(_ID_NAMESPACE, f"{seed}#{n}"))


class StoredEvent(BaseModel):
    """A domain event as the event store keeps it.

    Attributes:
        id: unique id; deterministic when published from a task or an event handler.
        type: what happened (``"OrderCreated"``).
        data: the event's JSON body (the spec's ``payload``, also readable as ``.payload``).
        stream: the stream (aggregate) it belongs to; also the record key, so a stream keeps
            its order in one partition.
        sequence: position in the stream, from 1 (``None`` for events from foreign producers).
        timestamp: when it happened (UTC).
        correlation_id: the conversation it belongs to (a run, a choreography chain).
        causation_id: what caused it (a task attempt key, the id of a handled event).
        source: who published it (``task:wf/task``, ``handler:wf.fn``), for tracing.
        metadata: free-form extra fields.
        partition, offset: where it was read from (set on events read back, not stored).
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    type: str
    data: Any = None
    stream: str = ""
    sequence: int | None = None
    timestamp: datetime = Field(default_factory=utcnow)
    correlation_id: str | None = None
    causation_id: str | None = None
    source: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    v: int = SCHEMA_VERSION
    partition: int | None = Field(default=None, exclude=True)
    offset: int | None = Field(default=None, exclude=True)

    @property
    def payload(self) -> Any:
        """The spec's name for :attr:`data`."""
        return self.data

    def at(self, partition: int, offset: int) -> StoredEvent:
        """This event with the position it was read from."""
        return self.model_copy(update={"partition": partition, "offset": offset})

    def to_json(self) -> dict[str, Any]:
        """The event as the JSON object stored in the log."""
        return self.model_dump(mode="json")


def encode_unit(
    events: Sequence[StoredEvent], *, cloudevents: bool = False
) -> tuple[bytes, Headers]:
    """The record value and headers holding ``events`` (one stream, appended atomically);
    with ``cloudevents``, a single event as a structured CloudEvent."""
    first = events[0]
    if cloudevents and len(events) == 1:
        return _store_cloudevents.encode(first)
    if len(events) == 1:
        body: dict[str, Any] = first.to_json()
    else:
        body = {"type": BATCH_TYPE, "stream": first.stream, "events": [e.to_json() for e in events]}
    headers: Headers = (
        ("deerflow-event-type", first.type.encode()),
        ("deerflow-event-id", first.id.encode()),
    )
    return _codec.dumps(body), headers


def decode_unit(record: Record) -> list[StoredEvent]:
    """The events a record holds, with their position; ``[]`` if it is not an event."""
    binary = _store_cloudevents.binary_fields(record)
    if binary is not None:
        event = _lenient(binary, record, 0)
        return [] if event is None else [event.at(record.partition, record.offset)]
    try:
        body = _codec.loads(record.value)
    except ValueError:
        return []
    if not isinstance(body, dict) or not isinstance(body.get("type"), str):
        return []
    if "specversion" in body:  # a CloudEvent, deerflow's or another producer's
        found = _store_cloudevents.fields(record.value)
        body = found if found is not None else body
    if body["type"] == BATCH_TYPE and isinstance(body.get("events"), list):
        items = [item for item in body["events"] if isinstance(item, dict)]
    else:
        items = [body]
    events = []
    for index, item in enumerate(items):
        event = _lenient(item, record, index)
        if event is None:
            return []
        events.append(event.at(record.partition, record.offset))
    return events


def _lenient(item: dict[str, Any], record: Record, index: int) -> StoredEvent | None:
    fields = dict(item)
    fields.setdefault("id", derived_id(f"{record.topic}/{record.partition}/{record.offset}", index))
    fields.setdefault("stream", record.key or "")
    if "data" not in fields and "payload" in fields:
        fields["data"] = fields["payload"]
    if "timestamp" not in fields:
        fields["timestamp"] = datetime.fromtimestamp(record.timestamp_ms / 1000, UTC)
    try:
        return StoredEvent.model_validate(fields)
    except ValidationError:
        return None
