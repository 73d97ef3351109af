"""The matching service: a router that re-keys both sides of a match, and the index.

Two consumer groups per deployment, both run by every engine whose workflows wait for events
or cancel on one (they carry :data:`MATCHING`):

* the **router** (``<prefix>.matching.router``) reads the history and the domain events. A
  wait that began (:class:`EventWaitStarted`), a run of a workflow with ``cancel_on`` that
  started, and every domain event of a type some workflow waits for become records of the
  ``<prefix>.matching`` topic keyed by (event type, event paths, values): a repartition, as
  Kafka Streams does for a join. A wait and the events that meet it land in one partition.
  Waits of runs that ended are retired the same way (an ``end`` record under their key).
* the **index** (``<prefix>.matching``) holds, per assigned partition, a
  :class:`~deerflow.matching._index.PartitionIndex`. An event looks its key up (no scan of the
  waiting runs); each wait it meets gets its resuming history event, whose id is the wait's
  and the event's, so a duplicate resumes nothing. On assignment a partition's index is
  rebuilt by reading the partition from its start: records before the group's committed
  offset only fill the index, later ones also resume (what a killed member matched but had
  not appended). Input is committed only with the resumes it caused (at least once).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import deerflow._codec as _codec
from deerflow.core import history as h
from deerflow.core.state import register_fold
from deerflow.eventstore import StoredEvent
from deerflow.eventstore.integration import decode_unit, derived_id
from deerflow.log.base import GroupConsumer, Message, Record, TopicPartition
from deerflow.matching._index import PartitionIndex, Wait
from deerflow.matching._kind import (
    WAIT_FOLD,
    WAIT_FOR_EVENT,
    EventMatched,
    EventWaitStarted,
    EventWaitTimedOut,
    WaitOptions,
)
from deerflow.matching._spec import MISSING, event_key, event_ts, event_view, resolve
from deerflow.runtime import BackgroundService, Engine, Plugin, Service

if TYPE_CHECKING:
    from deerflow.core import WorkflowDef

log = logging.getLogger("deerflow.matching")

register_fold(WAIT_FOLD)  # histories are folded without their definitions (CLI, run index)

POLL_RECORDS = 2000
#: runs the router remembers open waits of, to retire them when the run ends (oldest dropped:
#: their waits then leave the index by deadline, match or its bound)
RETIRE_LIMIT = 200_000
_WAIT_TYPES = (b'"EventWaitStarted"', b'"EventMatched"', b'"EventWaitTimedOut"')


def _terminal_types() -> list[bytes]:
    """The types of events that end a run, as they appear in a record (features add some)."""
    return [f'"{t}"'.encode() for t in sorted(h.TERMINAL_TYPES)]


def _node(node: Any) -> tuple[str, int, str, str, bool] | None:
    """A registration's ``node`` as the index keeps it: a tuple, its strings interned (a
    workflow's name, version and task ids repeat in every one of its waits)."""
    if node is None:
        return None
    task_id, attempt, workflow, version, where = node
    return (sys.intern(task_id), attempt, sys.intern(workflow), sys.intern(version), where)


def matching_topic(engine: Engine) -> str:
    """The topic both sides of a match are re-keyed into."""
    return f"{engine.topics.prefix}.matching"


def wanted(engine: Engine) -> dict[str, set[tuple[str, ...]]]:
    """Event type -> the event-path tuples some loaded workflow matches it on."""
    found: dict[str, set[tuple[str, ...]]] = {}
    for wf in engine.registry:
        for task in wf.tasks.values():
            if task.kind is WAIT_FOR_EVENT:
                opts = WAIT_FOR_EVENT.options(task, WaitOptions)
                found.setdefault(opts.event, set()).add(tuple(p for p, _ in opts.match))
        for spec in cancel_specs(wf):
            found.setdefault(spec.event, set()).add(tuple(p for p, _ in spec.pairs))
    return found


def source_topics(engine: Engine) -> dict[str, set[str]]:
    """Topic -> the event types its messages are, from the waits' ``source=``."""
    found: dict[str, set[str]] = {}
    for wf in engine.registry:
        for task in wf.tasks.values():
            if task.kind is WAIT_FOR_EVENT:
                opts = WAIT_FOR_EVENT.options(task, WaitOptions)
                if opts.topic is not None:
                    found.setdefault(opts.topic, set()).add(opts.event)
    return found


def cancel_specs(wf: WorkflowDef) -> tuple[Any, ...]:
    """``wf``'s ``cancel_on`` conditions (none for a workflow without the mixin)."""
    specs: tuple[Any, ...] = getattr(wf, "cancel_specs", ())
    return specs


async def _append_and_commit(
    engine: Engine,
    consumer: GroupConsumer,
    out: list[Message],
    records: Iterable[Record],
    offsets: dict[TopicPartition, int] | None = None,
) -> None:
    """Append ``out``, then commit past ``records`` (and ``offsets``): input is committed only
    once what it caused is durable (at least once)."""
    offsets = dict(offsets or {})
    for record in records:
        offsets[record.tp] = record.offset + 1
    if offsets:
        await consumer.append_and_commit(engine.log, out, offsets)
    elif out:
        await engine.log.append(out)


class _Member(BackgroundService):
    """A member of one of the matching groups: polls, handles, retries a failed round."""

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine
        self.topic = matching_topic(engine)
        self._consumer: GroupConsumer | None = None

    async def _close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                consumer = self._consumer
                if consumer is None:  # a re-subscription that failed: join again
                    await self._open()
                    continue
                await self._handle(consumer, await consumer.poll(0.5, POLL_RECORDS))
            except asyncio.CancelledError:
                raise
            except Exception:  # what it read is not committed: it comes again
                log.exception("%s: a round failed; retrying", self.loop_name())
                await asyncio.sleep(1.0)

    async def _handle(self, consumer: GroupConsumer, records: list[Record]) -> None:
        raise NotImplementedError


class Router(_Member):
    """Re-keys waits, cancel conditions and domain events into the matching topic."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        #: run id -> (wait id, key) of its open waits routed here, oldest run first
        self._open_waits: dict[str, list[tuple[str, str]]] = {}
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
        self._consumer = log_.consumer(
            f"{self.topic}.router", [topics.history, topics.events, *self.sources]
        )
        await self._consumer.start()

    async def _handle(self, consumer: GroupConsumer, records: list[Record]) -> None:
        if records:
            out = list(self.route(records))
            await _append_and_commit(self.engine, consumer, out, records)
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
            or (self._open_waits and any(t in value for t in ends))
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
        self._remember(event.run_id, event.wait_id, event.key)
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
            self._remember(event.run_id, ident, key)
            yield Message(topic=self.topic, key=key, value=_codec.dumps(record))

    def _remember(self, run_id: str, wait_id: str, key: str) -> None:
        self._open_waits.setdefault(run_id, []).append((wait_id, key))
        while len(self._open_waits) > RETIRE_LIMIT:
            del self._open_waits[next(iter(self._open_waits))]

    def _retire(self, run_id: str, wait_id: str | None) -> Iterator[Message]:
        waits = self._open_waits.get(run_id)
        if not waits:
            return
        ended = [w for w in waits if wait_id is None or w[0] == wait_id]
        kept = [w for w in waits if w not in ended]
        if kept:
            self._open_waits[run_id] = kept
        else:
            del self._open_waits[run_id]
        for ident, key in ended:
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


class Matcher(_Member):
    """The index: one :class:`PartitionIndex` per assigned partition of the matching topic."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.indexes: dict[int, PartitionIndex] = {}
        #: per partition, the first offset the loop handles (what came before: the rebuild's)
        self._ready_from: dict[int, int] = {}
        self._pending: list[h.HistoryEvent] = []
        #: offsets rebuilds read up to, committed with the resumes they found
        self._rebuilt: dict[TopicPartition, int] = {}
        self._lock = asyncio.Lock()
        self.resumed = 0
        #: seconds the last rebuild of each partition took, and records it read
        self.rebuilds: dict[int, tuple[float, int]] = {}

    def loop_name(self) -> str:
        """See :meth:`BackgroundService.loop_name`."""
        return "deerflow-matching-index"

    async def _open(self) -> None:
        log_ = self.engine.log
        partitions = await log_.partition_count(self.engine.topics.history)
        await log_.ensure_topic(self.topic, partitions)
        self._consumer = log_.consumer(self.topic, [self.topic], listener=self)
        await self._consumer.start()

    async def on_assigned(self, partitions: frozenset[TopicPartition]) -> None:
        """Rebuild each new partition's index from the log (see the module docstring)."""
        consumer = self._consumer
        assert consumer is not None
        async with self._lock:
            for tp in sorted(partitions, key=lambda tp: tp.partition):
                started = asyncio.get_running_loop().time()
                committed = await consumer.committed(tp) or 0
                records = await self.engine.log.read_partition(tp, 0)
                index = self.indexes[tp.partition] = PartitionIndex()
                end = records[-1].offset + 1 if records else committed
                for record in records:
                    resumes = self._apply(index, record)
                    if record.offset >= committed:
                        self._pending.extend(resumes)
                self._ready_from[tp.partition] = end
                if records:
                    await consumer.seek(tp, end)
                    self._rebuilt[tp] = end
                took = asyncio.get_running_loop().time() - started
                self.rebuilds[tp.partition] = (took, len(records))
                log.info(
                    "matching partition %d rebuilt: %d records, %d waits, %.3fs",
                    tp.partition,
                    len(records),
                    len(index),
                    took,
                )

    async def on_revoked(self, partitions: frozenset[TopicPartition]) -> None:
        """Drop the indexes of partitions another member holds now."""
        for tp in partitions:
            self.indexes.pop(tp.partition, None)
            self._ready_from.pop(tp.partition, None)

    async def _handle(self, consumer: GroupConsumer, records: list[Record]) -> None:
        async with self._lock:
            out, self._pending = self._pending, []
            rebuilt, self._rebuilt = self._rebuilt, {}
            rebuilt = {tp: end for tp, end in rebuilt.items() if tp.partition in self.indexes}
            fresh = []
            for record in records:
                index = self.indexes.get(record.partition)
                if index is None or record.offset < self._ready_from.get(record.partition, 0):
                    continue  # fetched before a rebuild that read it
                fresh.append(record)
                out.extend(self._apply(index, record))
            now = h.now()
            for index in self.indexes.values():
                index.expire(now)
        history = self.engine.topics.history
        try:
            await _append_and_commit(
                self.engine, consumer, [h.message(history, e) for e in out], fresh, rebuilt
            )
        except Exception:
            self._pending[:0] = out  # appended again next round (ids make repeats harmless)
            self._rebuilt = {**rebuilt, **self._rebuilt}
            raise
        self.resumed += len(out)
        if out and self.engine.orchestrator is not None:
            # Durable now: a run this process owns moves without a round trip through the log.
            self.engine.orchestrator.observe(out)

    def _apply(self, index: PartitionIndex, record: Record) -> list[h.HistoryEvent]:
        """Apply one matching-topic record; the resuming history events it causes."""
        try:
            body = _codec.loads(record.value)
        except ValueError:
            return []
        kind = body.get("k") if isinstance(body, dict) else None
        key = record.key or ""
        if kind == "wait":
            # ids and keys are one wait's own: interning them would only grow the intern table
            node = _node(body.get("node"))
            wait = Wait(body["id"], body["run"], key, body["since"], body["deadline"], node)
            evicted = index.evicted
            view = index.add(wait, self._accept)
            if index.evicted > evicted:
                log.warning(
                    "matching partition %d holds %d waits: the oldest left the index (its run "
                    "still times out by its own timer)",
                    record.partition,
                    len(index),
                )
            return [] if view is None else [self._resume(wait, view)]
        if kind == "event":
            view = body["event"]
            return [
                self._resume(w, view) for w in index.event(key, event_ts(view), view, self._accept)
            ]
        if kind == "end":
            index.end(body["id"])
        return []

    def _accept(self, wait: Wait, view: dict[str, Any]) -> bool:
        """Whether ``view`` passes the wait's ``where`` (waits without one take any)."""
        node = wait.node
        if node is None or not node[4]:
            return True
        task_id, _, workflow, version, _ = node
        wf = self.engine.registry.get(workflow, version)
        if wf is None or task_id not in wf.tasks:
            log.error(
                "run %s waits on %r of %s %s, not loaded here: where= cannot be checked",
                wait.run_id,
                task_id,
                workflow,
                version,
            )
            return False
        where = WAIT_FOR_EVENT.options(wf.get(task_id), WaitOptions).where
        try:
            return bool(where is None or where(view))
        except Exception:
            log.exception(
                "run %s, task %r: where= raised on event %s; not a match",
                wait.run_id,
                task_id,
                view.get("id"),
            )
            return False

    def _resume(self, wait: Wait, view: dict[str, Any]) -> h.HistoryEvent:
        node = wait.node
        event: h.HistoryEvent
        if node is None:
            event = h.RunCancelRequested(
                id=h.event_id(wait.id, view["id"]),
                run_id=wait.run_id,
                reason=f"cancel_on: {view['type']} event {view['id']}",
            )
        else:
            event = EventMatched(
                id=h.event_id(wait.id, view["id"]),
                run_id=wait.run_id,
                task_id=node[0],
                attempt=node[1],
                event=view,
            )
        return event


class MatchingPlugin(Plugin):
    """Runs the router and the index in engines whose workflows wait for events."""

    def services(self, engine: Engine) -> Iterable[Service]:
        """The engine's router and index."""
        return [Router(engine), Matcher(engine)]


MATCHING = MatchingPlugin()
