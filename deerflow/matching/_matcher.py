"""The index: one :class:`~deerflow.matching._index.PartitionIndex` per assigned partition.

An event looks its key up (no scan of the waiting runs); each wait it meets gets its resuming
history event, whose id is the wait's and the event's, so a duplicate resumes nothing. On
assignment a partition's index is rebuilt by reading the partition from where its rebuild
starts (:mod:`._rebuild`): records before the group's committed offset only fill the index,
later ones also resume (what a killed member matched but had not appended). The rebuild runs
beside the poll loop, the partition paused meanwhile, not in the rebalance callback: a long
one cannot make the member miss its poll interval. Input is committed only with the resumes
it caused (at least once).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import deerflow._codec as _codec
from deerflow.core import history as h
from deerflow.log.base import GroupConsumer, Message, Record, TopicPartition
from deerflow.matching._index import BUFFER_SECONDS, PartitionIndex, Wait
from deerflow.matching._kind import WAIT_FOR_EVENT, EventMatched, WaitOptions
from deerflow.matching._member import Member, append_and_commit, log
from deerflow.matching._rebuild import (
    CARRY_AGE,
    REREAD,
    STORE_STEP,
    OffsetClock,
    carried,
    rebuild_from,
    rebuild_group,
)
from deerflow.matching._spec import event_ts
from deerflow.runtime import Engine


def _node(node: Any) -> tuple[str, int, str, str, bool] | None:
    """A registration's ``node`` as the index keeps it: a tuple, its strings interned (a
    workflow's name, version and task ids repeat in every one of its waits)."""
    if node is None:
        return None
    task_id, attempt, workflow, version, where = node
    return (sys.intern(task_id), attempt, sys.intern(workflow), sys.intern(version), where)


class Matcher(Member):
    """The index: one :class:`PartitionIndex` per assigned partition of the matching topic."""

    #: records a rebuild reads at least (see :data:`._rebuild.REREAD`)
    reread: int = REREAD
    #: seconds after which a live wait's registration is written again
    carry_age: float = CARRY_AGE
    #: seconds an event stays buffered for late waits and ``lookback`` (see :mod:`._index`)
    buffer_seconds: float = BUFFER_SECONDS

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
        #: the rebuilds under way, one task per partition (its records are paused meanwhile)
        self._rebuilding: dict[TopicPartition, asyncio.Task[None]] = {}
        #: per partition, the offset after the last record applied
        self._heads: dict[int, int] = {}
        #: per partition, where its rebuild starts as last stored
        self._stored: dict[int, int] = {}
        #: per partition, when its offsets were read (for :attr:`carry_age`)
        self._clocks: dict[int, OffsetClock] = {}
        #: per partition, the head its written-again registrations reach (none again before)
        self._carry_until: dict[int, int] = {}

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
        """Pause each new partition and rebuild its index beside the poll loop."""
        consumer = self._consumer
        assert consumer is not None
        consumer.pause(partitions)
        for tp in sorted(partitions):
            self._rebuilding[tp] = asyncio.create_task(
                self._rebuild(consumer, tp), name=f"deerflow-matching-rebuild-{tp.partition}"
            )

    async def on_revoked(self, partitions: frozenset[TopicPartition]) -> None:
        """Drop the indexes (and rebuilds) of partitions another member holds now."""
        for tp in partitions:
            task = self._rebuilding.pop(tp, None)
            if task is not None:
                task.cancel()
            self.indexes.pop(tp.partition, None)
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
        """Read ``tp`` from where its rebuild starts into a new index; then let the loop on.

        A failed attempt is tried again (the partition stays paused meanwhile).
        """
        while True:
            try:
                await self._rebuild_once(consumer, tp)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("matching partition %d: the rebuild failed; retrying", tp.partition)
                await asyncio.sleep(1.0)

    async def _rebuild_once(self, consumer: GroupConsumer, tp: TopicPartition) -> None:
        started = asyncio.get_running_loop().time()
        committed = await consumer.committed(tp) or 0
        group = rebuild_group(self.topic)
        stored = (await self.engine.log.group_offsets(group, [tp])).get(tp) or 0
        start = min(stored, committed)
        records = await self.engine.log.read_partition(tp, start)
        index = PartitionIndex(buffer_seconds=self.buffer_seconds)
        pending: list[h.HistoryEvent] = []
        for n, record in enumerate(records, 1):
            resumes = self._apply(index, record)
            if record.offset >= committed:
                pending.extend(resumes)
            if n % 10_000 == 0:
                await asyncio.sleep(0)  # a long rebuild leaves the loop its turns
        end = records[-1].offset + 1 if records else committed
        async with self._lock:
            if self._rebuilding.get(tp) is not asyncio.current_task():
                return  # revoked meanwhile
            self.indexes[tp.partition] = index
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
            "matching partition %d rebuilt from offset %d: %d records, %d waits, %.3fs",
            tp.partition,
            start,
            len(records),
            len(index),
            took,
        )

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
                self._heads[record.partition] = record.offset + 1
            now = h.now()
            for index in self.indexes.values():
                index.expire(now)
            for partition, head in self._heads.items():
                self._clocks.setdefault(partition, OffsetClock()).read(head, now)
            again = self._carried(now)
        history = self.engine.topics.history
        try:
            await append_and_commit(
                self.engine,
                consumer,
                [*again, *(h.message(history, e) for e in out)],
                fresh,
                rebuilt,
            )
        except Exception:
            self._pending[:0] = out  # appended again next round (ids make repeats harmless)
            self._rebuilt = {**rebuilt, **self._rebuilt}
            raise
        self.resumed += len(out)
        if out and self.engine.orchestrator is not None:
            # Durable now: a run this process owns moves without a round trip through the log.
            self.engine.orchestrator.observe(out)
        await self._store_rebuild_offsets()

    def _carried(self, now: float) -> list[Message]:
        """The registrations of long-lived waits to write again (see :mod:`._rebuild`), once
        the ones written before were read back."""
        again: list[Message] = []
        for partition, index in self.indexes.items():
            head = self._heads.get(partition, 0)
            if head < self._carry_until.get(partition, 0):
                continue
            clock = self._clocks.setdefault(partition, OffsetClock())
            before = max(head - self.reread, clock.before(self.carry_age, now))
            found = carried(index, self.topic, partition, before)
            if found:
                self._carry_until[partition] = head + len(found)
                again += found
        return again

    async def _store_rebuild_offsets(self) -> None:
        """Store where each partition's rebuild starts, once it moved by :data:`STORE_STEP`."""
        moved = {}
        for partition, index in self.indexes.items():
            start = rebuild_from(index, self._heads.get(partition, 0), self.reread)
            if start >= self._stored.get(partition, 0) + min(STORE_STEP, self.reread):
                moved[TopicPartition(self.topic, partition)] = start
        if moved:
            await self.engine.log.commit_group(rebuild_group(self.topic), moved)
            self._stored.update({tp.partition: start for tp, start in moved.items()})

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
            wait = Wait(
                body["id"], body["run"], key, body["since"], body["deadline"], node, record.offset
            )
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
            met = index.event(key, event_ts(view), view, self._accept, record.offset)
            return [self._resume(w, view) for w in met]
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
