"""Consumer-group members whose state per partition is rebuilt from the partition itself.

A feature that folds a topic of its own into per-partition state and appends history events
as it goes (the matching index, flow control's gates) is one of these: :class:`GroupMember`
polls and retries a failed round; :class:`RebuildingMember` also rebuilds a partition's state
on assignment by reading the partition from its start. Records before the group's committed
offset only fill the state (what they caused was appended already), later ones also yield
their events (what a killed member decided but had not appended). Input is committed only
with the events it caused (at least once: the events' ids make a repeat harmless).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Generic, TypeVar

from deerflow.core import history as h
from deerflow.log.base import GroupConsumer, Record, TopicPartition
from deerflow.runtime._service import BackgroundService

if TYPE_CHECKING:
    from deerflow.runtime._engine import Engine

log = logging.getLogger("deerflow.runtime")

POLL_RECORDS = 2000

S = TypeVar("S")


class GroupMember(BackgroundService):
    """A member of a consumer group: polls, handles each batch, retries a failed round."""

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
                await self._handle(consumer, await consumer.poll(0.5, POLL_RECORDS))
            except asyncio.CancelledError:
                raise
            except Exception:  # what it read is not committed: it comes again
                log.exception("%s: a round failed; retrying", self.loop_name())
                await asyncio.sleep(1.0)

    async def _handle(self, consumer: GroupConsumer, records: list[Record]) -> None:
        raise NotImplementedError


class RebuildingMember(GroupMember, Generic[S]):
    """A group member holding a state ``S`` per assigned partition (see the module docstring).

    Subclasses say how to open their consumer (with ``listener=self``), make an empty state
    (:meth:`new_state`) and apply one record to it (:meth:`apply`).
    """

    #: what a rebuild's log line calls the partition (``matching``, ``flow``)
    what = "partition"

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.partitions: dict[int, S] = {}
        #: per partition, the first offset the loop handles (what came before: the rebuild's)
        self._ready_from: dict[int, int] = {}
        self._pending: list[h.HistoryEvent] = []
        #: offsets rebuilds read up to, committed with the events they found
        self._rebuilt: dict[TopicPartition, int] = {}
        self._lock = asyncio.Lock()
        #: seconds the last rebuild of each partition took, and records it read
        self.rebuilds: dict[int, tuple[float, int]] = {}

    def new_state(self) -> S:
        """An empty state for a partition."""
        raise NotImplementedError

    def apply(self, state: S, record: Record) -> list[h.HistoryEvent]:
        """Apply one record to its partition's ``state``; the history events it causes."""
        raise NotImplementedError

    def after_round(self) -> None:
        """Called after each round's records were applied (under the lock); nothing here."""

    def appended(self, events: list[h.HistoryEvent]) -> None:
        """``events`` are durable: a run this process owns moves on without a round trip."""
        if events and self.engine.orchestrator is not None:
            self.engine.orchestrator.observe(events)

    async def on_assigned(self, partitions: frozenset[TopicPartition]) -> None:
        """Rebuild each new partition's state from the log (see the module docstring)."""
        consumer = self._consumer
        assert consumer is not None
        async with self._lock:
            for tp in sorted(partitions, key=lambda tp: tp.partition):
                started = asyncio.get_running_loop().time()
                committed = await consumer.committed(tp) or 0
                records = await self.engine.log.read_partition(tp, 0)
                state = self.partitions[tp.partition] = self.new_state()
                end = records[-1].offset + 1 if records else committed
                for record in records:
                    caused = self.apply(state, record)
                    if record.offset >= committed:
                        self._pending.extend(caused)
                self._ready_from[tp.partition] = end
                if records:
                    await consumer.seek(tp, end)
                    self._rebuilt[tp] = end
                took = asyncio.get_running_loop().time() - started
                self.rebuilds[tp.partition] = (took, len(records))
                log.info(
                    "%s partition %d rebuilt: %d records, %s, %.3fs",
                    self.what,
                    tp.partition,
                    len(records),
                    self.describe(state),
                    took,
                )

    def describe(self, state: S) -> str:
        """What a rebuilt state holds, for the log line."""
        return f"{len(state)} entries" if hasattr(state, "__len__") else "rebuilt"

    async def on_revoked(self, partitions: frozenset[TopicPartition]) -> None:
        """Drop the states of partitions another member holds now."""
        for tp in partitions:
            self.partitions.pop(tp.partition, None)
            self._ready_from.pop(tp.partition, None)

    async def _handle(self, consumer: GroupConsumer, records: list[Record]) -> None:
        async with self._lock:
            out, self._pending = self._pending, []
            rebuilt, self._rebuilt = self._rebuilt, {}
            rebuilt = {tp: end for tp, end in rebuilt.items() if tp.partition in self.partitions}
            offsets = dict(rebuilt)
            for record in records:
                state = self.partitions.get(record.partition)
                if state is None or record.offset < self._ready_from.get(record.partition, 0):
                    continue  # fetched before a rebuild that read it
                offsets[record.tp] = record.offset + 1
                out.extend(self.apply(state, record))
            self.after_round()
        if not offsets and not out:
            return
        messages = [h.message(self.engine.topics.history, e) for e in out]
        try:
            if offsets:
                await consumer.append_and_commit(self.engine.log, messages, offsets)
            else:
                await self.engine.log.append(messages)
        except Exception:
            self._pending[:0] = out  # appended again next round (ids make repeats harmless)
            self._rebuilt = {**rebuilt, **self._rebuilt}
            raise
        self.appended(out)
