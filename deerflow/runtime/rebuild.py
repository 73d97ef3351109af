"""Consumer-group members whose state per partition is rebuilt from the partition itself.

A feature that folds a topic of its own into per-partition state and appends history events
as it goes (the matching index, flow control's gates) is one of these: :class:`GroupMember`
polls and retries a failed round; :class:`RebuildingMember` also rebuilds a partition's state
on assignment. Records before the group's committed offset only fill the state (what they
caused was appended already), later ones also yield their events (what a killed member
decided but had not appended). Input is committed only with the events it caused (at least
once: the events' ids make a repeat harmless).

The rebuild runs beside the poll loop, the partition paused meanwhile, one task per
partition, not in the rebalance callback: a long one cannot make the member miss its poll
interval. A failed rebuild is tried again.

It reads a bounded span, not the whole partition. The state says (:class:`Rebuildable`) the
offset of the oldest record it still needs; the member stores, per partition, where a rebuild
starts (the bookkeeping group ``<topic>.rebuild-from``):

* at least the last :attr:`RebuildingMember.reread` records, so a record delivered again
  within that window is still recognised;
* and no later than the oldest record the state still needs.

An entry that lives long would pin that offset: the state names the entries recorded before
a given offset (:meth:`Rebuildable.carry`), and the member writes them again at the
partition's end, once older than the window or than :attr:`RebuildingMember.carry_age`; the
offset then moves on, and a topic's time retention removes only records of entries that
ended.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from deerflow.core import history as h
from deerflow.log.base import GroupConsumer, Message, Record, TopicPartition
from deerflow.runtime._service import BackgroundService

if TYPE_CHECKING:
    from deerflow.runtime._engine import Engine

log = logging.getLogger("deerflow.runtime")

POLL_RECORDS = 2000
#: records a rebuild reads at least (the window in which a repeat is recognised)
REREAD = 100_000
#: entries written again per partition and round at most (the rest in later rounds)
CARRY_BATCH = 5_000
#: seconds after which a live entry's record is written again (well within the 7 days Kafka
#: keeps a topic's records by default)
CARRY_AGE = 86_400.0
#: how far a partition's rebuild offset moves before it is stored again (a commit on Kafka
#: costs a consumer's start)
STORE_STEP = 10_000
#: records a rebuild applies between two turns it leaves the event loop
YIELD_EVERY = 10_000


class Rebuildable(Protocol):
    """What a rebuilt state tells its member so that rebuilds read a bounded span."""

    def oldest_offset(self) -> int | None:
        """The offset of the oldest record a rebuild needs for what the state holds;
        ``None``: none."""
        ...

    def carry(self, before: int, limit: int) -> list[tuple[str, bytes]]:
        """Up to ``limit`` records (key, value) to write again at the partition's end: those
        of live entries recorded before offset ``before``, oldest first."""
        ...


S = TypeVar("S", bound=Rebuildable)


def rebuild_group(topic: str) -> str:
    """The bookkeeping group whose offsets are where each partition's rebuild starts."""
    return f"{topic}.rebuild-from"


def rebuild_from(state: Rebuildable, head: int, reread: int = REREAD) -> int:
    """Where a rebuild of the partition, whose next offset is ``head``, must start."""
    start = max(head - reread, 0)
    oldest = state.oldest_offset()
    return start if oldest is None else min(start, oldest)


class OffsetClock:
    """When a partition's offsets were read, sampled (one per :data:`TICK` seconds at most)."""

    TICK = 60.0

    def __init__(self) -> None:
        self._samples: deque[tuple[int, float]] = deque()

    def read(self, offset: int, now: float) -> None:
        """``offset`` was the partition's next offset at ``now``."""
        if not self._samples or now - self._samples[-1][1] >= self.TICK:
            self._samples.append((offset, now))

    def before(self, age: float, now: float) -> int:
        """An offset all of whose earlier records were read more than ``age`` seconds ago
        (samples older than that are dropped, but the newest of them)."""
        while len(self._samples) > 1 and now - self._samples[1][1] > age:
            self._samples.popleft()
        oldest = self._samples[0] if self._samples else None
        return oldest[0] if oldest is not None and now - oldest[1] > age else 0


class GroupMember(BackgroundService):
    """A member of a consumer group: polls, handles each batch, retries a failed round."""

    #: records one round takes at most
    poll_records: int = POLL_RECORDS

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine
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
                await self._handle(consumer, await consumer.poll(0.5, self.poll_records))
            except asyncio.CancelledError:
                raise
            except Exception:  # what it read is not committed: it comes again
                log.exception("%s: a round failed; retrying", self.loop_name())
                await asyncio.sleep(1.0)

    async def _handle(self, consumer: GroupConsumer, records: list[Record]) -> None:
        raise NotImplementedError

    async def append_and_commit(
        self,
        consumer: GroupConsumer,
        out: list[Message],
        records: list[Record],
        offsets: dict[TopicPartition, int] | None = None,
    ) -> None:
        """Append ``out``, then commit past ``records`` (and ``offsets``): input is committed
        only once what it caused is durable (at least once)."""
        offsets = dict(offsets or {})
        for record in records:
            offsets[record.tp] = record.offset + 1
        if offsets:
            await consumer.append_and_commit(self.engine.log, out, offsets)
        elif out:
            await self.engine.log.append(out)


class RebuildingMember(GroupMember, Generic[S]):
    """A group member holding a state ``S`` per assigned partition of :attr:`topic` (see the
    module docstring).

    Subclasses say how to open their consumer (with ``listener=self``), make an empty state
    (:meth:`new_state`) and apply one record to it (:meth:`apply`).
    """

    #: what a rebuild's log line calls the partition (``matching``, ``flow``)
    what = "partition"
    #: records a rebuild reads at least
    reread: int = REREAD
    #: seconds after which a live entry's record is written again
    carry_age: float = CARRY_AGE

    def __init__(self, engine: Engine, topic: str) -> None:
        super().__init__(engine)
        self.topic = topic
        self.partitions: dict[int, S] = {}
        #: per partition, the first offset the loop handles (what came before: the rebuild's)
        self._ready_from: dict[int, int] = {}
        self._pending: list[h.HistoryEvent] = []
        #: offsets rebuilds read up to, committed with the events they found
        self._rebuilt: dict[TopicPartition, int] = {}
        self._lock = asyncio.Lock()
        #: seconds the last rebuild of each partition took, and records it read
        self.rebuilds: dict[int, tuple[float, int]] = {}
        #: the rebuilds under way, one task per partition (its records are paused meanwhile)
        self._rebuilding: dict[TopicPartition, asyncio.Task[None]] = {}
        #: per partition, the offset after the last record applied
        self._heads: dict[int, int] = {}
        #: per partition, where its rebuild starts as last stored
        self._stored: dict[int, int] = {}
        #: per partition, when its offsets were read (for :attr:`carry_age`)
        self._clocks: dict[int, OffsetClock] = {}
        #: per partition, the head its written-again records reach (none again before)
        self._carry_until: dict[int, int] = {}

    def new_state(self) -> S:
        """An empty state for a partition."""
        raise NotImplementedError

    def apply(self, state: S, record: Record) -> list[h.HistoryEvent]:
        """Apply one record to its partition's ``state``; the history events it causes."""
        raise NotImplementedError

    def after_round(self, now: float) -> None:
        """Called after each round's records were applied (under the lock); nothing here."""

    def appended(self, events: list[h.HistoryEvent]) -> None:
        """``events`` are durable: a run this process owns moves on without a round trip."""
        if events and self.engine.orchestrator is not None:
            self.engine.orchestrator.observe(events)

    def describe(self, state: S) -> str:
        """What a rebuilt state holds, for the log line."""
        return "rebuilt"

    async def on_assigned(self, partitions: frozenset[TopicPartition]) -> None:
        """Pause each new partition and rebuild its state beside the poll loop."""
        consumer = self._consumer
        assert consumer is not None
        consumer.pause(partitions)
        for tp in sorted(partitions):
            self._rebuilding[tp] = asyncio.create_task(
                self._rebuild(consumer, tp), name=f"deerflow-{self.what}-rebuild-{tp.partition}"
            )

    async def on_revoked(self, partitions: frozenset[TopicPartition]) -> None:
        """Drop the states (and rebuilds) of partitions another member holds now."""
        for tp in partitions:
            task = self._rebuilding.pop(tp, None)
            if task is not None:
                task.cancel()
            self.partitions.pop(tp.partition, None)
            self._ready_from.pop(tp.partition, None)
            self._heads.pop(tp.partition, None)
            self._carry_until.pop(tp.partition, None)
            self._clocks.pop(tp.partition, None)

    async def _close(self) -> None:
        for task in self._rebuilding.values():
            task.cancel()
        self._rebuilding.clear()
        await super()._close()

    async def _rebuild(self, consumer: GroupConsumer, tp: TopicPartition) -> None:
        """Read ``tp`` from where its rebuild starts into a new state; then let the loop on.

        A failed attempt is tried again (the partition stays paused meanwhile).
        """
        while True:
            try:
                await self._rebuild_once(consumer, tp)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception(
                    "%s partition %d: the rebuild failed; retrying", self.what, tp.partition
                )
                await asyncio.sleep(1.0)

    async def _rebuild_once(self, consumer: GroupConsumer, tp: TopicPartition) -> None:
        started = asyncio.get_running_loop().time()
        committed = await consumer.committed(tp) or 0
        group = rebuild_group(self.topic)
        stored = (await self.engine.log.group_offsets(group, [tp])).get(tp) or 0
        start = min(stored, committed)
        records = await self.engine.log.read_partition(tp, start)
        state = self.new_state()
        pending: list[h.HistoryEvent] = []
        for n, record in enumerate(records, 1):
            caused = self.apply(state, record)
            if record.offset >= committed:
                pending.extend(caused)
            if n % YIELD_EVERY == 0:
                await asyncio.sleep(0)  # a long rebuild leaves the loop its turns
        end = records[-1].offset + 1 if records else committed
        async with self._lock:
            if self._rebuilding.get(tp) is not asyncio.current_task():
                return  # revoked meanwhile
            self.partitions[tp.partition] = state
            self._pending.extend(pending)
            self._ready_from[tp.partition] = self._heads[tp.partition] = end
            self._stored[tp.partition] = start
            if records:
                await consumer.seek(tp, end)
                self._rebuilt[tp] = end
            consumer.resume(frozenset([tp]))
            del self._rebuilding[tp]
        took = asyncio.get_running_loop().time() - started
        self.rebuilds[tp.partition] = (took, len(records))
        log.info(
            "%s partition %d rebuilt from offset %d: %d records, %s, %.3fs",
            self.what,
            tp.partition,
            start,
            len(records),
            self.describe(state),
            took,
        )

    async def _handle(self, consumer: GroupConsumer, records: list[Record]) -> None:
        async with self._lock:
            out, self._pending = self._pending, []
            rebuilt, self._rebuilt = self._rebuilt, {}
            rebuilt = {tp: end for tp, end in rebuilt.items() if tp.partition in self.partitions}
            fresh = []
            for record in records:
                state = self.partitions.get(record.partition)
                if state is None or record.offset < self._ready_from.get(record.partition, 0):
                    continue  # fetched before a rebuild that read it
                fresh.append(record)
                out.extend(self.apply(state, record))
                self._heads[record.partition] = record.offset + 1
            now = h.now()
            self.after_round(now)
            for partition, head in self._heads.items():
                self._clocks.setdefault(partition, OffsetClock()).read(head, now)
            again = self._carried(now)
        history = self.engine.topics.history
        caused = [h.message(history, e) for e in out]
        try:
            if caused:
                # The events are durable once appended: their runs move on now, not after the
                # commit's round trip too (the input is committed next, at least once still).
                await self.engine.log.append([*again, *caused])
                again = []
        except Exception:
            self._pending[:0] = out  # appended again next round (ids make repeats harmless)
            self._rebuilt = {**rebuilt, **self._rebuilt}
            raise
        if caused:
            self.appended(out)
        try:
            await self.append_and_commit(consumer, again, fresh, rebuilt)
        except Exception:
            self._rebuilt = {**rebuilt, **self._rebuilt}
            raise
        await self._store_rebuild_offsets()

    def _carried(self, now: float) -> list[Message]:
        """The records of long-lived entries to write again (see the module docstring), once
        the ones written before were read back."""
        again: list[Message] = []
        for partition, state in self.partitions.items():
            head = self._heads.get(partition, 0)
            if head < self._carry_until.get(partition, 0):
                continue
            clock = self._clocks.setdefault(partition, OffsetClock())
            before = max(head - self.reread, clock.before(self.carry_age, now))
            found = [
                Message(topic=self.topic, key=key, value=value, partition=partition)
                for key, value in state.carry(before, CARRY_BATCH)
            ]
            if found:
                self._carry_until[partition] = head + len(found)
                again += found
        return again

    async def _store_rebuild_offsets(self) -> None:
        """Store where each partition's rebuild starts, once it moved by :data:`STORE_STEP`."""
        moved = {}
        for partition, state in self.partitions.items():
            start = rebuild_from(state, self._heads.get(partition, 0), self.reread)
            if start >= self._stored.get(partition, 0) + min(STORE_STEP, self.reread):
                moved[TopicPartition(self.topic, partition)] = start
        if moved:
            await self.engine.log.commit_group(rebuild_group(self.topic), moved)
            self._stored.update({tp.partition: start for tp, start in moved.items()})
