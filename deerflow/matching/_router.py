"""The router: re-keys waits, cancel conditions and domain events into the matching topic.

It reads the history and the domain events (and the topics waits name with ``source=``). A
wait that began (:class:`EventWaitStarted`), a run of a workflow with ``cancel_on`` that
started, and every domain event of a type some workflow waits for become records of the
``<prefix>.matching`` topic keyed by (event type, event paths, values): a repartition, as
Kafka Streams does for a join, so a wait and the events that meet it land in one partition.
Waits of runs that ended are retired the same way (an ``end`` record under their key).

Which waits each run has open is noted as they are routed (:class:`~deerflow.matching._notes.
OpenWaits`); when history partitions are assigned to the router (a start, a takeover), their
history is paused until the note of their runs is rebuilt from the matching topic, so a run
that ends after a restart still retires its waits.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

import deerflow._codec as _codec
from deerflow.core import history as h
from deerflow.eventstore import StoredEvent
from deerflow.eventstore.integration import decode_unit, derived_id
from deerflow.log.base import GroupConsumer, Message, Record, TopicPartition, partition_for
from deerflow.matching._kind import EventMatched, EventWaitStarted, EventWaitTimedOut
from deerflow.matching._notes import OpenWaits, rebuilt_notes
from deerflow.matching._spec import MISSING, event_key, event_view, matching_topic, resolve
from deerflow.matching._wanted import cancel_specs, source_topics, wanted
from deerflow.runtime import Engine, GroupMember

log = logging.getLogger("deerflow.matching")

_WAIT_TYPES = (b'"EventWaitStarted"', b'"EventMatched"', b'"EventWaitTimedOut"')


def _terminal_types() -> list[bytes]:
    """The types of events that end a run, as they appear in a record (features add some)."""
    return [f'"{t}"'.encode() for t in sorted(h.TERMINAL_TYPES)]


class Router(GroupMember):
    """Re-keys waits, cancel conditions and domain events into the matching topic."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.topic = matching_topic(engine.topics.prefix)
        #: the open waits of the runs whose history is routed here
        self.notes = OpenWaits()
        #: the rebuilds of the notes of newly assigned history partitions under way
        self._noting: dict[TopicPartition, asyncio.Task[None]] = {}
        self._history_partitions = 0
        self.routed = 0
        #: topics named by ``source=`` (subscribed when the router starts) -> their event types
        self.sources: dict[str, set[str]] = {}

    def loop_name(self) -> str:
        """See :meth:`BackgroundService.loop_name`."""
        return "deerflow-matching-router"

    async def _open(self) -> None:
        log_, topics = self.engine.log, self.engine.topics
        partitions = await log_.partition_count(topics.history)
        await log_.ensure_topic(self.topic, partitions)
        self.sources = source_topics(self.engine)
        for topic in (topics.events, *self.sources):
            await log_.partition_count(topic)
        self._history_partitions = partitions
        self._consumer = log_.consumer(
            f"{self.topic}.router", [topics.history, topics.events, *self.sources], listener=self
        )
        await self._consumer.start()

    async def _close(self) -> None:
        for task in self._noting.values():
            task.cancel()
        self._noting.clear()
        await super()._close()

    async def on_assigned(self, partitions: frozenset[TopicPartition]) -> None:
        """Pause newly assigned history partitions until their runs' open waits are noted."""
        history = frozenset(tp for tp in partitions if tp.topic == self.engine.topics.history)
        consumer = self._consumer
        if not history or consumer is None:
            return
        consumer.pause(history)
        task = asyncio.create_task(self._note(consumer, history), name="deerflow-router-notes")
        self._noting.update(dict.fromkeys(history, task))

    async def on_revoked(self, partitions: frozenset[TopicPartition]) -> None:
        """Forget the runs of history partitions another member routes now."""
        history = {tp for tp in partitions if tp.topic == self.engine.topics.history}
        for tp in history:  # a rebuild under way for others too goes on; these are not its
            self._noting.pop(tp, None)
        self.notes.forget_partitions({tp.partition for tp in history}, self._history_partitions)

    async def _note(self, consumer: GroupConsumer, history: frozenset[TopicPartition]) -> None:
        """Rebuild the notes of ``history``'s runs, then let their records on (a failed
        attempt is tried again; the partitions stay paused meanwhile)."""
        while True:
            try:
                found = await rebuilt_notes(
                    self.engine.log,
                    self.topic,
                    {tp.partition for tp in history},
                    self._history_partitions,
                )
                break
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("matching router: noting the open waits failed; retrying")
                await asyncio.sleep(1.0)
        mine = frozenset(tp for tp in history if self._noting.get(tp) is asyncio.current_task())
        kept = {tp.partition for tp in mine}  # not those revoked meanwhile
        noted = 0
        for run_id, wait_id, key in found:
            if partition_for(run_id, self._history_partitions) in kept:
                self.notes.remember(run_id, wait_id, key)
                noted += 1
        for tp in mine:
            del self._noting[tp]
        consumer.resume(mine)
        log.info("matching router: %d open waits noted for %d history partitions", noted, len(mine))

    async def _handle(self, consumer: GroupConsumer, records: list[Record]) -> None:
        if records:
            out = list(self.route(records))
            await self.append_and_commit(consumer, out, records)
            self.routed += len(out)
        await self._follow_sources()

    async def _follow_sources(self) -> None:
        """Subscribe to the ``source=`` topics of workflows registered since the router began.

        The group's offsets are kept, so the router re-joins where it was; a new topic is read
        from its start (its messages before the wait began are older than the wait: only a
        ``lookback`` matches them).
        """
        found = source_topics(self.engine)
        if found.keys() <= self.sources.keys():
            self.sources = {t: found.get(t, types) for t, types in self.sources.items()}
            return
        log.info(
            "matching router: subscribing to %s (named by a workflow registered since)",
            ", ".join(sorted(found.keys() - self.sources.keys())),
        )
        await self._close()
        await self._open()

    def route(self, records: Iterable[Record]) -> Iterator[Message]:
        """The matching-topic records ``records`` become."""
        history = self.engine.topics.history
        types = wanted(self.engine)
        cancels = any(cancel_specs(wf) for wf in self.engine.registry)
        ends = _terminal_types()
        for record in records:
            if record.topic == history:
                yield from self._from_history(record.value, cancels, ends)
            elif record.topic in self.sources:
                for event in self._from_source(record):
                    yield from self._from_event(event, types)
            elif types:
                for event in decode_unit(record):
                    yield from self._from_event(event, types)

    def _from_history(self, value: bytes, cancels: bool, ends: list[bytes]) -> Iterator[Message]:
        # Most history records concern none of this: a byte check skips them undecoded.
        if not (
            any(t in value for t in _WAIT_TYPES)
            or (cancels and b'"RunRequested"' in value)
            or (self.notes and any(t in value for t in ends))
        ):
            return
        try:
            event = h.decode(value)
        except ValueError:
            return
        if isinstance(event, EventWaitStarted):
            if event.error is None:
                yield self._wait(event)
        elif isinstance(event, h.RunRequested):
            yield from self._cancel_waits(event)
        elif isinstance(event, EventMatched | EventWaitTimedOut):
            yield from self._retire(
                event.run_id, h.event_id(event.run_id, event.task_id, event.attempt, "wait")
            )
        elif event.type in h.TERMINAL_TYPES:
            yield from self._retire(event.run_id, None)

    def _wait(self, event: EventWaitStarted) -> Message:
        since = event.since - (event.lookback or 0.0)
        record = {
            "k": "wait",
            "id": event.wait_id,
            "run": event.run_id,
            "since": since,
            "deadline": event.deadline,
            "node": [event.task_id, event.attempt, event.workflow, event.version, event.filtered],
        }
        self.notes.remember(event.run_id, event.wait_id, event.key)
        return Message(topic=self.topic, key=event.key, value=_codec.dumps(record))

    def _cancel_waits(self, event: h.RunRequested) -> Iterator[Message]:
        wf = self.engine.registry.get(event.workflow, event.version)
        if wf is None:
            return
        view = {
            "params": {**wf.default_params, **event.params},
            "input": event.input,
            "trigger": event.trigger or {},
        }
        for number, spec in enumerate(cancel_specs(wf)):
            values = [resolve(run_path, view) for _, run_path in spec.pairs]
            if any(v is MISSING for v in values):
                log.warning(
                    "run %s: no value for cancel_on %s %s",
                    event.run_id,
                    spec.event,
                    dict(spec.pairs),
                )
                continue
            key = event_key(spec.event, tuple(p for p, _ in spec.pairs), tuple(values))
            ident = h.event_id(event.run_id, "cancel_on", number)
            record = {
                "k": "wait",
                "id": ident,
                "run": event.run_id,
                "since": event.ts,
                "deadline": None,
                "cancel": spec.event,
            }
            self.notes.remember(event.run_id, ident, key)
            yield Message(topic=self.topic, key=key, value=_codec.dumps(record))

    def _retire(self, run_id: str, wait_id: str | None) -> Iterator[Message]:
        for ident, key in self.notes.retire(run_id, wait_id):
            yield Message(topic=self.topic, key=key, value=_codec.dumps({"k": "end", "id": ident}))

    def _from_source(self, record: Record) -> Iterator[StoredEvent]:
        """A message of a ``source=`` topic as an event of each type waiting on the topic."""
        found = decode_unit(record)
        if found:
            data, ident, when = found[0].data, found[0].id, found[0].timestamp
        else:
            try:
                data = _codec.loads(record.value)
            except ValueError:
                data = record.value.decode(errors="replace")
            ident = derived_id(f"{record.topic}/{record.partition}/{record.offset}", 0)
            when = datetime.fromtimestamp(record.timestamp_ms / 1000, UTC)
        for event_type in self.sources[record.topic]:
            yield StoredEvent(
                id=ident, type=event_type, data=data, timestamp=when, source=f"kafka:{record.topic}"
            )

    def _from_event(
        self, event: StoredEvent, types: dict[str, set[tuple[str, ...]]]
    ) -> Iterator[Message]:
        path_sets = types.get(event.type)
        if not path_sets:
            return
        view = event_view(
            id=event.id,
            type=event.type,
            data=event.data,
            time=event.timestamp,
            source=event.source,
            stream=event.stream,
            correlation_id=event.correlation_id,
        )
        for paths in path_sets:
            values = tuple(resolve(p, view) for p in paths)
            if any(v is MISSING for v in values):
                continue
            key = event_key(event.type, paths, values)
            record = {"k": "event", "event": view}
            yield Message(topic=self.topic, key=key, value=_codec.dumps(record))
