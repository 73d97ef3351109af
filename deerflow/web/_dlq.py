"""The dead-letter topic: list what could not be processed, and replay it.

Dead letters come from workers (an unreadable task message) and trigger sources (a Kafka
message whose filter raised, an S3 notification that is not one). A letter that carries the
original message (``topic`` and ``value`` in its body) is replayed by appending that message
to its topic again: task messages to the engine's task queue, Kafka trigger messages to the
trigger's topic (a new offset, so a new run once the cause is fixed). A letter of an event
handler is replayed by handing its event to that handler again, in the replaying process (which
must load the handler's workflow), with the handler's retries; the other handlers of the event
type, which handled it already, do not see it again. Other sources register their own replayer
with a :class:`~deerflow.web.WebPlugin` (``replayers()``).

A replay is recorded as a marker record on the dead-letter topic itself (header
``deerflow-replay-of: PARTITION:OFFSET``), so every process shows which letters were replayed,
and nothing outside the log is needed.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import deerflow._codec as _codec
from deerflow.choreography.integration import handle_again
from deerflow.connectors import find_trigger
from deerflow.connectors.kafka import source_log_for, source_url_for
from deerflow.engine import Engine
from deerflow.errors import DeerflowError
from deerflow.events import KafkaEvent
from deerflow.eventstore import StoredEvent
from deerflow.log.base import Message, Record, TopicPartition
from deerflow.web import _extend

REPLAY_HEADER = "deerflow-replay-of"

Replayer = Callable[[Engine, "DeadLetterEntry"], Awaitable[str]]


def register_replayer(source: str, replayer: Replayer) -> Replayer:
    """Replay dead letters whose ``source`` is ``source`` with ``replayer(engine, entry)``.

    The replayer returns a short description of what it did; it raises
    :class:`deerflow.errors.DeerflowError` to refuse. Kept for existing code: a
    :class:`~deerflow.web.WebPlugin` passed to the engine does the same (``replayers()``).
    """
    _extend.REGISTERED.replaying[source] = replayer
    return replayer


@dataclass
class DeadLetterEntry:
    """One dead letter as read from the topic."""

    partition: int
    offset: int
    key: str | None
    timestamp_ms: int
    reason: str
    source: str
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    replayed_at: float | None = None

    @property
    def ref(self) -> str:
        """``PARTITION:OFFSET``, how the API and the CLI name a letter."""
        return f"{self.partition}:{self.offset}"

    def as_json(self) -> dict[str, Any]:
        """The entry as the API returns it."""
        return {
            "ref": self.ref,
            "partition": self.partition,
            "offset": self.offset,
            "key": self.key,
            "timestamp_ms": self.timestamp_ms,
            "reason": self.reason,
            "source": self.source,
            "trigger": self.body.get("trigger"),
            "replayed_at": self.replayed_at,
            "body": self.body,
            "headers": self.headers,
        }


def _entry(record: Record) -> DeadLetterEntry:
    headers = {k: v.decode("utf-8", "replace") for k, v in record.headers}
    try:
        body = _codec.loads(record.value)
    except ValueError:
        body = {"value": record.value.decode("utf-8", "replace")}
    if not isinstance(body, dict):
        body = {"value": body}
    # Worker letters have no ``source``: they carry the task message they could not read.
    source = str(body.get("source") or ("worker" if "topic" in body else "unknown"))
    reason = str(body.get("reason") or headers.get("deerflow-reason") or "")
    return DeadLetterEntry(
        record.partition,
        record.offset,
        record.key,
        record.timestamp_ms,
        reason,
        source,
        body,
        headers,
    )


async def dead_letters(engine: Engine, *, limit: int = 500) -> list[DeadLetterEntry]:
    """Dead letters, newest first, each marked with when it was replayed (if it was)."""
    topic = engine.topics.dlq
    count = await engine.log.partition_count(topic)
    by_tp = await engine.log.read_partitions({TopicPartition(topic, p): 0 for p in range(count)})
    entries: dict[str, DeadLetterEntry] = {}
    replays: dict[str, float] = {}
    for records in by_tp.values():
        for record in records:
            marker = dict(record.headers).get(REPLAY_HEADER)
            if marker is not None:
                replays[marker.decode()] = record.timestamp_ms / 1000
            else:
                entry = _entry(record)
                entries[entry.ref] = entry
    for ref, at in replays.items():
        if ref in entries:
            entries[ref].replayed_at = at
    ordered = sorted(entries.values(), key=lambda e: (e.timestamp_ms, e.ref), reverse=True)
    return ordered[:limit]


class DeadLetterNotFound(DeerflowError):
    """No dead letter has that ``PARTITION:OFFSET``."""


_LARGEST_OFFSET = 2**63 - 1  # what a log can hold (SQLite's INTEGER, Kafka's int64)


def _ref_numbers(ref: str) -> tuple[int, int]:
    partition, sep, offset = ref.partition(":")
    digits = partition.isascii() and partition.isdigit() and offset.isascii() and offset.isdigit()
    if not sep or not digits:
        raise DeerflowError(f"a dead letter is named PARTITION:OFFSET, not {ref!r}")
    return int(partition), int(offset)


async def find_letter(engine: Engine, ref: str) -> DeadLetterEntry:
    """The dead letter ``PARTITION:OFFSET``.

    Raises:
        DeadLetterNotFound: there is none of that name.
        DeerflowError: ``ref`` is not of the form ``PARTITION:OFFSET``.
    """
    partition, offset = _ref_numbers(ref)
    topic = engine.topics.dlq
    if offset <= _LARGEST_OFFSET and partition < await engine.log.partition_count(topic):
        for record in await engine.log.read_partition(TopicPartition(topic, partition), offset):
            if record.offset == offset and not dict(record.headers).get(REPLAY_HEADER):
                return _entry(record)
    raise DeadLetterNotFound(f"no dead letter {ref}")


async def replay(engine: Engine, ref: str) -> str:
    """Replay dead letter ``ref`` and record that it was; returns what was done."""
    entry = await find_letter(engine, ref)
    replayer = _extend.replayer_for(engine, entry.source) or _BUILT_IN.get(
        entry.source, _replay_message
    )
    done = await replayer(engine, entry)
    marker = {"replay_of": entry.ref, "at": time.time(), "done": done}
    await engine.log.append(
        [
            Message(
                topic=engine.topics.dlq,
                key=entry.key,
                value=_codec.dumps(marker),
                headers=((REPLAY_HEADER, entry.ref.encode()),),
            )
        ]
    )
    return done


async def _replay_handled_event(engine: Engine, entry: DeadLetterEntry) -> str:
    """An event handler's letter: its event, to that handler again (same idempotency key)."""
    name = entry.body.get("handler")
    handler = next(
        (h for wf in engine.registry for h in getattr(wf, "event_handlers", ()) if h.name == name),
        None,
    )
    if handler is None:
        raise DeerflowError(
            f"dead letter {entry.ref}: event handler {name!r} is not loaded "
            "here; replay it with the app that defines it (--app FILE.py)"
        )
    # Where the event sits in the log is kept beside it (events published by the handler
    # are ordered after it).
    event = StoredEvent.model_validate(entry.body["event"]).at(
        int(entry.body["partition"]), int(entry.body["offset"])
    )
    if await handle_again(engine, handler, event):
        return f"event {event.id} handled again by {name}"
    return f"event {event.id} failed again in {name}: dead-lettered anew"


#: what this module replays itself when no plugin knows the source
_BUILT_IN: dict[str, Replayer] = {"event_handler": _replay_handled_event}


def _original_value(entry: DeadLetterEntry) -> bytes:
    value = entry.body["value"]
    if entry.body.get("value_encoding") == "base64":
        return base64.b64decode(value)
    return str(value).encode() if not isinstance(value, (dict, list)) else _codec.dumps(value)


async def _replay_message(engine: Engine, entry: DeadLetterEntry) -> str:
    """The default replayer: append the carried message to its topic again."""
    topic = entry.body.get("topic")
    if not isinstance(topic, str) or "value" not in entry.body:
        raise DeerflowError(
            f"dead letter {entry.ref} ({entry.source}) carries no message to "
            "replay; a replayer for this source is needed"
        )
    log = engine.log
    owned = False
    if topic != engine.topics.tasks:
        log, owned = await _trigger_log(engine, entry)
    key = entry.body.get("key") if entry.source == "kafka" else entry.key
    try:
        if owned:
            await log.start()
        await log.append(
            [
                Message(
                    topic=topic,
                    key=key if isinstance(key, str) else None,
                    value=_original_value(entry),
                )
            ]
        )
    finally:
        if owned:
            await log.stop()
    return f"appended the message again to {topic}"


async def _trigger_log(engine: Engine, entry: DeadLetterEntry) -> tuple[Any, bool]:
    """The log holding a Kafka trigger's topic: the trigger must be loaded to know its cluster."""
    name = str(entry.body.get("trigger") or "")
    try:
        _wf, trigger = find_trigger(list(engine.registry), name)
    except DeerflowError:
        raise DeerflowError(
            f"dead letter {entry.ref} came from trigger {name!r}, which is not "
            "loaded here; serve the app (or pass --app) to replay it"
        ) from None
    if not isinstance(trigger, KafkaEvent):
        raise DeerflowError(f"trigger {name!r} is not a Kafka trigger")
    return source_log_for(engine, source_url_for(engine, trigger))
