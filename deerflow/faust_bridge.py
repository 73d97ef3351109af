"""Faust agents taking part in deerflow's choreography.

A Faust app reads deerflow's domain events topic and publishes events that deerflow's event
handlers (and Kafka triggers, projections, ``EventStore`` readers) react to. The engine itself
never imports Faust; only this module does.

::

    import faust
    from deerflow.faust_bridge import events_of, events_topic, publish

    app = faust.App("fraud", broker="kafka://localhost:9092", broker_session_timeout=3)
    events = events_topic(app)                     # $DEERFLOW_PREFIX.events, raw bytes

    @app.agent(events)
    async def screen(stream):
        async for message in stream.events():
            for event in events_of(message):
                if event.type == "OrderStarted":
                    await publish(events, "FraudCleared", event.data, cause=event)

What the bridge guarantees: events it publishes have deerflow's JSON shape and are keyed by
their stream, so they land in the partition deerflow would put them in (Kafka's murmur2
partitioner on both sides). Published with a ``cause``, an event inherits its correlation id,
takes its id as causation id, and gets a deterministic id, so when Faust redelivers the cause
(at least once) and the agent publishes again, deerflow's readers and handlers skip the copy.
Events from Faust carry no sequence number (``sequence=None``): Faust does not know a
stream's version, so they are not part of optimistic concurrency.

Faust on a small or test broker (seen with Tansu): use ``broker_session_timeout=3`` for quick
group joins; avoid tables (their recovery trusts end offsets, which Tansu reports short, and
loses the last records); start workers with ``--without-web``, as ``faust worker`` binds
port 6066 even with ``web_enabled=False``.
"""

from __future__ import annotations

import uuid
from typing import Any

import deerflow._codec as _codec
from deerflow.core import Topics
from deerflow.errors import MissingDependency
from deerflow.eventstore import StoredEvent
from deerflow.eventstore.integration import PROCESS, decode_unit, derived_id, encode_unit
from deerflow.log.base import Record

try:
    import faust
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependency(
        "deerflow.faust_bridge needs faust-streaming: pip install 'deerflow[faust]'"
    ) from exc

__all__ = ["events_of", "events_topic", "publish"]


def events_topic(app: faust.App, *, name: str | None = None, prefix: str | None = None) -> Any:
    """deerflow's events topic as a Faust topic of raw bytes (decode with :func:`events_of`).

    Args:
        app: the Faust app.
        name: the topic (default: the engine's events topic, ``$DEERFLOW_PREFIX.events``).
        prefix: the deerflow topic prefix, when not ``$DEERFLOW_PREFIX``.
    """

    return app.topic(
        name or Topics.from_env(prefix).events, key_serializer="raw", value_serializer="raw"
    )


def events_of(message: Any) -> list[StoredEvent]:
    """The deerflow events a Faust message (or stream event) holds; ``[]`` for anything else."""
    message = getattr(message, "message", message)  # a faust Event carries its Message
    value = message.value
    if not isinstance(value, (bytes, bytearray)):
        return []
    key = message.key
    record = Record(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=key.decode() if isinstance(key, (bytes, bytearray)) else key,
        value=bytes(value),
        headers=tuple(message.headers or ()),
        timestamp_ms=int((message.timestamp or 0) * 1000),
    )
    return decode_unit(record)


async def publish(
    topic: Any,
    event_type: str,
    data: Any = None,
    *,
    cause: StoredEvent | None = None,
    stream: str | None = None,
    correlation_id: str | None = None,
    rank: int = 0,
    id: str | None = None,
) -> StoredEvent:
    """Publish a deerflow event from a Faust agent and wait until the broker has it.

    Args:
        topic: the Faust topic from :func:`events_topic`.
        event_type: what happened.
        data: its JSON body.
        cause: the deerflow event being reacted to: gives correlation id, causation id and
            a deterministic id (so a redelivered cause publishes the same event).
        stream: the stream (default: the correlation id, as ``publish_event`` does).
        correlation_id: overrides the inherited one.
        rank: tells apart several events of one type published for one cause.
        id: an explicit event id.
    """

    if id is None:
        seed = f"faust:{topic.get_topic_name()}:{cause.id}:{event_type}" if cause else None
        id = derived_id(seed, rank) if seed else uuid.uuid4().hex
    correlation = correlation_id or (cause.correlation_id or cause.id if cause else None) or id
    event = StoredEvent(
        id=id,
        type=event_type,
        data=_codec.to_json_value(data),
        stream=stream or correlation,
        correlation_id=correlation,
        causation_id=cause.id if cause else None,
        source=f"faust:{topic.app.conf.id}@{PROCESS}",
    )
    value, headers = encode_unit([event])
    await (await topic.send(key=event.stream.encode(), value=value, headers=list(headers)))
    return event
