"""Small durable state for connectors, kept as records on a deerflow topic.

Connectors need a little state that must survive restarts and be shared by processes: the
newest S3 sequencer seen per object key, the cursor of a polled bucket. Rather than a second
store, it lives in the event log itself, one JSON record per change, keyed by the state's key;
the latest record of a key (or the greatest, with a ``merge``) is its value. A ledger reads its
topic at start and picks up other processes' writes with :meth:`Ledger.refresh`. Memory is
bounded: only the ``max_keys`` most recently used keys are kept (older ones are forgotten, so
staleness checks for them are skipped, never wrong the other way).

A ledger with a ``window`` forgets a key that long after it was recorded, and its reads stay
bounded too: each record carries the time it was written, and where a start reads each
partition from (the offset before which every record is older than the window) is stored in
the bookkeeping group ``<topic>.read-from``. A start then reads the window's records, not the
topic since its creation; a key recorded again after it expired is recorded anew.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import deerflow._codec as _codec
from deerflow.log.base import EventLog, LogReader, Message, Record, TopicPartition

log = logging.getLogger("deerflow.connectors.ledger")

Merge = Callable[[Any, Any], Any]

#: how far a windowed ledger's read-from offset moves before it is stored again (a commit on
#: Kafka costs a consumer's start)
STORE_STEP = 1_000


def read_from_group(topic: str) -> str:
    """The bookkeeping group whose offsets are where a windowed ledger's start reads from."""
    return f"{topic}.read-from"


class WriteTimes:
    """When one partition's records were written, in spans of at most :data:`TICK` seconds.

    Each span keeps the offset after its last record and the newest time written in it, so
    :meth:`before` can name an offset all of whose earlier records are older than an age.
    """

    TICK = 60.0

    def __init__(self) -> None:
        #: (span start, offset after its last record, newest time in it), oldest span first
        self._spans: deque[list[float]] = deque()

    def written(self, offset: int, at: float) -> None:
        """The record at ``offset`` was written at ``at``."""
        last = self._spans[-1] if self._spans else None
        if last is not None and at - last[0] < self.TICK:
            last[1] = max(last[1], offset + 1)
            last[2] = max(last[2], at)
        else:
            self._spans.append([at, offset + 1, at])

    def before(self, age: float, now: float) -> int:
        """An offset all of whose earlier records were written more than ``age`` seconds
        before ``now`` (0: none known); the spans it passes are dropped."""
        while len(self._spans) > 1 and self._spans[1][2] < now - age:
            self._spans.popleft()
        first = self._spans[0] if self._spans else None
        return int(first[1]) if first is not None and first[2] < now - age else 0


def last_wins(old: Any, new: Any) -> Any:
    """The default merge: the newer record replaces the value."""
    return new


def greatest(old: Any, new: Any) -> Any:
    """Keep the greater value (for monotonic markers such as S3 sequencers)."""
    return new if old is None or new > old else old


class Ledger:
    """Latest value per key, durable on ``topic`` of ``log``.

    Args:
        log: the event log (the engine's).
        topic: the topic holding the records.
        merge: how a record combines with the value already known.
        max_keys: keys kept in memory.
        partitions: partitions of the topic when it is created.
        window: seconds a key is kept after it was recorded (``None``: as long as the topic
            keeps it and ``max_keys`` allows).
        clock: the time now, in seconds (what records are stamped with and expire by).
    """

    def __init__(
        self,
        log_: EventLog,
        topic: str,
        *,
        merge: Merge = last_wins,
        max_keys: int = 100_000,
        partitions: int = 4,
        window: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.topic = topic
        self.window = window
        self._clock = clock
        #: records the last :meth:`start` read
        self.records_read = 0
        #: per partition, when its offsets were written (for the window's read-from offset)
        self._times: dict[TopicPartition, WriteTimes] = {}
        #: per partition, the read-from offset as last stored
        self._stored: dict[TopicPartition, int] = {}
        #: key -> when its value was recorded (with a window)
        self._at: dict[str, float] = {}
        self._log = log_
        self._merge = merge
        self._max_keys = max_keys
        self._partitions = partitions
        self._values: OrderedDict[str, Any] = OrderedDict()
        self._reader: LogReader | None = None
        self._starting: asyncio.Future[Any] | None = None

    async def start(self) -> None:
        """Read the topic to its end, then follow it; idempotent."""
        if self._reader is not None:
            return
        count = await self._log.ensure_topic(self.topic, self._partitions)
        tps = [TopicPartition(self.topic, p) for p in range(count)]
        if self.window is not None:
            stored = await self._log.group_offsets(read_from_group(self.topic), tps)
            self._stored = {tp: offset for tp, offset in stored.items() if offset is not None}
        ends: dict[TopicPartition, int] = {}
        self.records_read = 0
        for tp in tps:
            start = self._stored.get(tp, 0)
            records = await self._log.read_partition(tp, start)
            for record in records:
                self._apply(record)
            self.records_read += len(records)
            ends[tp] = records[-1].offset + 1 if records else start
        self._reader = self._log.reader(ends)
        await self._reader.start()

    async def started_by(self, add_service: Callable[[Ledger], Awaitable[Any]]) -> None:
        """Started once, by ``add_service`` (an engine's: stopped with it), however many
        callers wait for it; after a failed start the next call tries again."""
        if self._starting is None:
            self._starting = asyncio.ensure_future(add_service(self))
        starting = self._starting
        try:
            await asyncio.shield(starting)
        except Exception:
            self._starting = None
            raise

    async def stop(self) -> None:
        """Stop following; idempotent."""
        reader, self._reader = self._reader, None
        if reader is not None:
            await reader.stop()

    async def refresh(self) -> None:
        """Apply records other processes appended since the last look (best effort)."""
        if self._reader is None:
            return
        for record in await self._reader.poll(timeout=0.0, max_records=10_000):
            self._apply(record)
        await self._store_read_from()

    def get(self, key: str) -> Any:
        """The value of ``key``, or ``None`` (also once it expired)."""
        if self._expired(key):
            return None
        return self._values.get(key)

    async def put(self, values: Mapping[str, Any]) -> None:
        """Durably record new values (merged with the known ones)."""
        if not values:
            return
        at = self._clock()
        stamp = {} if self.window is None else {"at": at}
        placed = await self._log.append(
            [
                Message(
                    topic=self.topic,
                    key=key,
                    value=_codec.dumps({"key": key, "value": value, **stamp}),
                )
                for key, value in values.items()
            ]
        )
        for (key, value), (tp, offset) in zip(values.items(), placed, strict=True):
            self._set(key, value, at)
            self._written(tp, offset, at)
        await self._store_read_from()

    def _apply(self, record: Record) -> None:
        try:
            data = _codec.loads(record.value)
            key, value = str(data["key"]), data["value"]
            at = float(data.get("at", record.timestamp_ms / 1000))
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring an unreadable record at %s:%d", record.tp, record.offset)
            return
        self._written(record.tp, record.offset, at)
        if self.window is None or at >= self._clock() - self.window:
            self._set(key, value, at)

    def _set(self, key: str, value: Any, at: float) -> None:
        if self._expired(key):
            self._forget(key)
        old = self._values.get(key)
        merged = self._merge(old, value)
        self._values[key] = merged
        self._values.move_to_end(key)
        if self.window is not None and (old is None or merged != old):
            self._at[key] = at  # the time the value it has now was recorded
        while len(self._values) > self._max_keys:
            self._forget(next(iter(self._values)))

    def _forget(self, key: str) -> None:
        self._values.pop(key, None)
        self._at.pop(key, None)

    def _expired(self, key: str) -> bool:
        at = self._at.get(key)
        return self.window is not None and at is not None and at < self._clock() - self.window

    def _written(self, tp: TopicPartition, offset: int, at: float) -> None:
        """Record ``offset`` of ``tp`` was written at ``at`` (what was before it, before)."""
        if self.window is not None:
            self._times.setdefault(tp, WriteTimes()).written(offset, at)

    async def _store_read_from(self) -> None:
        """Store where a start reads each partition from, once it moved by :data:`STORE_STEP`:
        every record before it is older than the window."""
        if self.window is None:
            return
        now = self._clock()
        moved = {}
        for tp, times in self._times.items():
            start = times.before(self.window, now)
            if start >= self._stored.get(tp, 0) + STORE_STEP:
                moved[tp] = start
        if moved:
            await self._log.commit_group(read_from_group(self.topic), moved)
            self._stored.update(moved)
