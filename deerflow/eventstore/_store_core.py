"""The asynchronous core of the event store: streams over one topic of an :class:`EventLog`.

It runs on one event loop (the store's home loop). Appends follow the rule of
:mod:`._store_index`: number from the known version, append, check where the unit landed.
Reads start where a stream starts (learnt by the index) or at a snapshot, so loading an
aggregate does not read the whole partition.
"""

from __future__ import annotations

import asyncio
import copy
import heapq
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import deerflow._codec as _codec
from deerflow._eventtypes import TypeFilter
from deerflow.errors import ConcurrencyConflict, EventStoreError, PayloadTooLarge
from deerflow.eventstore._store_index import Admission, PartitionIndex
from deerflow.eventstore._store_model import StoredEvent, decode_unit, encode_unit, utcnow
from deerflow.log.base import (
    EventLog,
    LogReader,
    Message,
    Record,
    TopicPartition,
    partition_for,
)
from deerflow.payloads import beyond_limit, size_text

MAX_RACES = 20
CATCH_UP_LIMIT = 60.0
Reducer = Callable[[Any, StoredEvent], Any]


@dataclass(frozen=True)
class Aggregate:
    """An aggregate rebuilt by folding its stream.

    Attributes:
        stream: the stream folded.
        state: the reducer's result.
        version: the stream's version it reflects: pass it as ``expected_version`` when
            appending the events a command produces.
        replayed: events folded by this load (after the snapshot, if one was used).
        snapshot_version: the version of the snapshot it started from, if any.
    """

    stream: str
    state: Any
    version: int
    replayed: int
    snapshot_version: int | None = None


@dataclass(frozen=True)
class _Snapshot:
    version: int
    offset: int
    state: Any


class EventStreams:
    """Streams of events on ``topic`` of ``log``; see the module docstring.

    Args:
        log: the event log (started by this object only if ``owns_log``).
        topic: the topic holding the events.
        owns_log: start and stop ``log`` with this object.
        partitions: partitions to create the topic with (default: the log's default).
        cloudevents: write each event as a structured CloudEvent.
    """

    def __init__(
        self,
        log: EventLog,
        topic: str,
        *,
        owns_log: bool,
        partitions: int | None = None,
        cloudevents: bool = False,
    ) -> None:
        self.log = log
        self.cloudevents = cloudevents
        self.topic = topic
        self.snapshot_topic = f"{topic}.snapshots"
        self._owns_log = owns_log
        self._partitions = partitions
        self._count = 0
        self._index: dict[int, PartitionIndex] = {}
        self._reader: LogReader | None = None
        self._reading = asyncio.Lock()
        self._writing: dict[int, asyncio.Lock] = {}
        self._snapshots: dict[int, tuple[int, dict[tuple[str, str], _Snapshot]]] = {}

    async def start(self) -> None:
        """Open the log if owned and make sure the topic exists (again after a stop)."""
        # Readers and locks belong to the loop they were made on: a restart may be on another.
        self._reader = None
        self._reading = asyncio.Lock()
        self._writing = {}
        if self._owns_log:
            await self.log.start()
        if self._partitions:
            self._count = await self.log.ensure_topic(self.topic, self._partitions)
        else:
            self._count = await self.log.partition_count(self.topic)

    async def stop(self) -> None:
        """Stop the index reader, and the log if owned."""
        reader, self._reader = self._reader, None
        if reader is not None:
            await reader.stop()
        if self._owns_log:
            await self.log.stop()

    @property
    def partitions(self) -> int:
        """Partitions of the topic."""
        return self._count

    def partition_of(self, stream: str) -> TopicPartition:
        """The partition holding ``stream``."""
        return TopicPartition(self.topic, partition_for(stream, self._count))

    # -- following the topic ------------------------------------------------------------------

    def _index_of(self, partition: int) -> PartitionIndex:
        return self._index.setdefault(partition, PartitionIndex())

    async def _catch_up(
        self, tp: TopicPartition, *, at_least: int | None = None, fresh: bool = False
    ) -> PartitionIndex:
        """Read the topic into the index until ``tp`` is covered to ``at_least`` (or its end).

        ``fresh`` asks the broker for the true end first: a Kafka reader's own idea of the end
        may be a fetch old, which is fine before an append (the check after it settles races)
        but not for a read that must see what another process just appended.
        """
        async with self._reading:
            if self._reader is None:
                start = {TopicPartition(self.topic, p): 0 for p in range(self._count)}
                self._reader = self.log.reader(start)
                await self._reader.start()
            reader, index = self._reader, self._index_of(tp.partition)
            target = at_least
            true_ends = getattr(self.log, "true_ends", None)
            if fresh and true_ends is not None:
                end = (await true_ends([tp]))[tp]
                target = end if target is None else max(target, end)
            await self._follow(reader, tp, index, target)
        return index

    async def _follow(
        self, reader: LogReader, tp: TopicPartition, index: PartitionIndex, target: int | None
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CATCH_UP_LIMIT
        wait = 0.0
        while True:
            records = await reader.poll(timeout=wait, max_records=5000)
            for record in records:
                self._index_of(record.partition).apply(record.offset, decode_unit(record))
            if target is not None and index.position >= target:
                return
            # Only tp's own end counts: other partitions may never be quiet.
            if target is None and reader.lag(tp) == 0:
                return
            if loop.time() > deadline:
                raise EventStoreError(
                    f"event store on {self.log.url}: could not read "
                    f"{tp.topic}[{tp.partition}] up to its end in time"
                )
            wait = 0.0 if records else 0.2

    async def ends(self, tps: Collection[TopicPartition]) -> dict[TopicPartition, int]:
        """The true end offset of each partition, as of now."""
        true_ends = getattr(self.log, "true_ends", None)
        if true_ends is not None:  # Kafka: a reader's own end may be a fetch old
            ends: dict[TopicPartition, int] = await true_ends(tps)
            return ends
        async with self.log.reader({tp: 0 for tp in tps}) as reader:
            await reader.poll(timeout=0.0, max_records=1)  # local logs learn every end at once
            return {tp: reader.position(tp) + (reader.lag(tp) or 0) for tp in tps}

    async def _stored_at(self, tp: TopicPartition, offset: int) -> list[StoredEvent]:
        async with self.log.reader({tp: offset}) as reader:
            for _ in range(int(CATCH_UP_LIMIT / 0.2)):
                records = await reader.poll(timeout=0.2, max_records=1)
                if records:
                    return decode_unit(records[0])
        raise EventStoreError(f"event store on {self.log.url}: record {offset} of {tp} is gone")

    # -- appending ---------------------------------------------------------------------------

    async def append(
        self,
        drafts: Sequence[StoredEvent],
        *,
        expected_version: int | None = None,
        after: tuple[str, int, int] | None = None,
    ) -> list[StoredEvent]:
        """Append ``drafts`` (one stream) as one unit; return them as stored.

        A unit whose first id is already in the stream is not appended again: the stored
        copy is returned. ``after`` is (topic, partition, offset) of a record known to exist
        (the event being handled): when it is in the stream's partition, the index reads at
        least past it first, so the version it numbers from is already current.
        """
        tp = self.partition_of(drafts[0].stream)
        at_least = None
        if after is not None and (after[0], after[1]) == (tp.topic, tp.partition):
            at_least = after[2] + 1
        async with self._writing.setdefault(tp.partition, asyncio.Lock()):
            await self._catch_up(tp, at_least=at_least)
            for _ in range(MAX_RACES):
                stored = await self._try_append(tp, drafts, expected_version)
                if stored is not None:
                    return stored
        raise EventStoreError(
            f"stream {drafts[0].stream!r}: lost {MAX_RACES} races in a row "
            "to other writers; try again"
        )

    async def _try_append(
        self, tp: TopicPartition, drafts: Sequence[StoredEvent], expected: int | None
    ) -> list[StoredEvent] | None:
        stream = drafts[0].stream
        index = self._index_of(tp.partition)
        if expected is not None and index.version(stream) != expected:
            index = await self._catch_up(tp, fresh=True)
        landed = index.admitted_at(drafts[0].id)
        if landed is not None:
            return await self._stored_at(tp, landed)
        version = index.version(stream)
        if expected is not None and version != expected:
            raise ConcurrencyConflict(
                f"stream {stream!r} is at version {version}, not the expected {expected}"
            )
        events = [d.model_copy(update={"sequence": version + 1 + i}) for i, d in enumerate(drafts)]
        value, headers = encode_unit(events, cloudevents=self.cloudevents)
        limit = self.log.max_value_bytes
        if limit is not None and len(value) > limit:  # the log would refuse it on every try
            types = ", ".join(sorted({e.type for e in events}))
            raise PayloadTooLarge(
                f"stream {stream!r}: {types} of {size_text(len(value))} is " + beyond_limit(limit)
            )
        [(_, offset)] = await self.log.append(
            [Message(self.topic, value, key=stream, headers=headers, partition=tp.partition)]
        )
        placed = [event.at(tp.partition, offset) for event in events]
        if offset == index.position:  # nothing landed in between: the rule admits it
            index.apply(offset, placed)
            return placed
        index = await self._catch_up(tp, at_least=offset + 1)
        landed = index.admitted_at(drafts[0].id)
        if landed == offset:
            return placed
        if landed is not None:  # a copy from another process (a redelivery) came first
            return await self._stored_at(tp, landed)
        if expected is not None:
            raise ConcurrencyConflict(
                f"stream {stream!r} was appended to concurrently: it is "
                f"past the expected version {expected}"
            )
        return None

    # -- reading -----------------------------------------------------------------------------

    async def _stream_start(self, tp: TopicPartition, stream: str) -> int | None:
        info = self._index_of(tp.partition).streams.get(stream)
        if info is None:  # perhaps new since this process last looked
            info = (await self._catch_up(tp, fresh=True)).streams.get(stream)
        return None if info is None else info.first_offset

    async def _stream_events(
        self, tp: TopicPartition, stream: str, start: int, admission: Admission
    ) -> list[StoredEvent]:
        events: list[StoredEvent] = []
        for record in await self.log.read_partition(tp, start):
            unit = decode_unit(record)
            if unit and unit[0].stream == stream and admission.admit(unit, record.offset):
                events.extend(unit)
        return events

    async def read(self, stream: str) -> list[StoredEvent]:
        """Every event of ``stream``, in order, as of now."""
        tp = self.partition_of(stream)
        start = await self._stream_start(tp, stream)
        if start is None:
            return []
        return await self._stream_events(tp, stream, start, Admission())

    async def replay(
        self,
        *,
        from_offset: int | Mapping[int, int] = 0,
        since: datetime | None = None,
        types: Collection[str] | None = None,
    ) -> list[StoredEvent]:
        """Every event of the topic from ``from_offset`` (per partition), as of now.

        Partitions are merged by timestamp; one stream's events always keep their order.
        """
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=UTC)  # naive means UTC, as for event timestamps
        starts = {
            TopicPartition(self.topic, p): _offset_for(from_offset, p) for p in range(self._count)
        }
        records = await self.log.read_partitions(starts)
        lanes = [_admitted(batch) for batch in records.values()]
        merged = heapq.merge(*lanes, key=lambda event: event.timestamp)
        wanted = TypeFilter(types)
        return [
            event
            for event in merged
            if wanted(event.type) and (since is None or event.timestamp >= since)
        ]

    # -- aggregates and snapshots ------------------------------------------------------------

    async def load(
        self,
        stream: str,
        reducer: Reducer,
        initial: Any = None,
        *,
        snapshot_every: int | None = None,
        snapshot_key: str | None = None,
    ) -> Aggregate:
        """Fold ``stream`` with ``reducer(state, event) -> state`` from ``initial``.

        With ``snapshot_every``, the fold starts from the latest snapshot of this reducer
        (``snapshot_key``, default its qualified name) and writes a new one when it had to
        fold that many events or more. Snapshot states must be JSON (they are stored).
        """
        tp = self.partition_of(stream)
        key = snapshot_key or _qualname(reducer)
        snapshot = await self._latest_snapshot(stream, key) if snapshot_every else None
        admission = Admission()
        if snapshot is not None:
            admission.versions.remember(stream, snapshot.version)
            start: int | None = snapshot.offset + 1
            state = copy.deepcopy(snapshot.state)
        else:
            start = await self._stream_start(tp, stream)
            state = copy.deepcopy(initial)
        events = [] if start is None else await self._stream_events(tp, stream, start, admission)
        for event in events:
            state = reducer(state, event)
        version = admission.version(stream)
        if snapshot_every and events and len(events) >= snapshot_every:
            last = events[-1].offset
            assert last is not None
            await self._save_snapshot(stream, key, _Snapshot(version, last, state))
        return Aggregate(
            stream, state, version, len(events), snapshot.version if snapshot is not None else None
        )

    def _snapshot_partition(self, stream: str, count: int) -> TopicPartition:
        return TopicPartition(self.snapshot_topic, partition_for(stream, count))

    async def _latest_snapshot(self, stream: str, key: str) -> _Snapshot | None:
        count = await self.log.partition_count(self.snapshot_topic)
        tp = self._snapshot_partition(stream, count)
        position, known = self._snapshots.get(tp.partition, (0, {}))
        for record in await self.log.read_partition(tp, position):
            position = record.offset + 1
            body = _codec.loads(record.value)
            found = _Snapshot(body["version"], body["offset"], body["state"])
            slot = (body["stream"], body["key"])
            if slot not in known or known[slot].version <= found.version:
                known[slot] = found
        self._snapshots[tp.partition] = (position, known)
        return known.get((stream, key))

    async def _save_snapshot(self, stream: str, key: str, snapshot: _Snapshot) -> None:
        count = await self.log.partition_count(self.snapshot_topic)
        body = {
            "stream": stream,
            "key": key,
            "version": snapshot.version,
            "offset": snapshot.offset,
            "state": snapshot.state,
            "timestamp": utcnow(),
        }
        tp = self._snapshot_partition(stream, count)
        await self.log.append(
            [Message(tp.topic, _codec.dumps(body), key=stream, partition=tp.partition)]
        )


def _admitted(records: list[Record]) -> list[StoredEvent]:
    admission = Admission()
    events: list[StoredEvent] = []
    for record in records:
        unit = decode_unit(record)
        if unit and admission.admit(unit, record.offset):
            events.extend(unit)
    return events


def _offset_for(from_offset: int | Mapping[int, int], partition: int) -> int:
    if isinstance(from_offset, int):
        return from_offset
    return from_offset.get(partition, 0)


def _qualname(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
