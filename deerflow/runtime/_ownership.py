"""Which runs an orchestrator holds: its history partitions' runs, rebuilt from the log.

Each history partition is owned by one member of the orchestrators' group at a time. The
member holds the state of each of its partitions' runs that has not ended, a tombstone for
each that has (:class:`~deerflow.runtime._tombstones.EndedRuns`), and the reasons runs are
parked. :class:`Ownership` is that table and the consumer group's listener that fills and
empties it; the orchestrator folds and decides on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Protocol

from deerflow.core import _history as h
from deerflow.core._state import RunState
from deerflow.log.base import EventLog, GroupConsumer, TopicPartition, partition_for
from deerflow.runtime._outbox import Outbox
from deerflow.runtime._tombstones import EndedRuns, refold

log = logging.getLogger("deerflow.orchestrator")


class Owner(Protocol):
    """What rebuilding needs of the orchestrator that folds and decides the runs."""

    def fold_record(self, value: bytes, touched: dict[str, RunState]) -> None:
        """Fold one history record into the run it belongs to (added to ``touched``)."""

    def forgotten(self, run_ids: set[str]) -> None:
        """``run_ids`` are no longer held here (their partition moved or is re-read)."""

    def resume(self, live: list[RunState]) -> int:
        """Pick up runs folded from the log; returns how many attempts went back on the queue."""

    def advance(self, runs: Iterable[RunState]) -> None:
        """Decide what is next for ``runs`` and submit it."""


class Ownership:
    """The owned partitions' runs, and their rebuild from the log on assignment.

    Contract: :meth:`on_assigned` drains the outbox, forgets what it held of the partitions,
    reads them from their first offset through ``owner.fold_record``, moves the consumer past
    what it read, keeps tombstones for ended runs and hands the others to ``owner.resume`` and
    ``owner.advance``. A failed rebuild leaves :attr:`stale` set for the loop to call
    :meth:`rebuild_all`. :meth:`on_revoked` drains the outbox and forgets the partitions. While
    a rebuild runs, :meth:`owns` is false for every run (no local fast path on half-read state).

    Args:
        log: the event log.
        topic: the history topic.
        owner: the orchestrator.
        outbox: its outbox (drained before partitions are re-read or given up).
        stopping: set when the orchestrator stops (a failed rebuild is then not retried).
    """

    def __init__(
        self, log_: EventLog, topic: str, owner: Owner, outbox: Outbox, stopping: asyncio.Event
    ) -> None:
        self._log = log_
        self._topic = topic
        self._owner = owner
        self._outbox = outbox
        #: the group's consumer of the history (set once joined)
        self.consumer: GroupConsumer | None = None
        #: how many partitions the history has (set once joined)
        self.partitions = 0
        #: states of the owned partitions' runs that have not ended (or not been evicted yet)
        self.runs: dict[str, RunState] = {}
        self._by_partition: dict[int, set[str]] = {}
        #: tombstones of ended runs: a dict entry each instead of a state
        self.ended = EndedRuns()
        #: runs whose loaded definition differs from theirs, with what changed (they wait)
        self.parked: dict[str, str] = {}
        #: ended runs an operator asked to retry: the loop folds them again from the log
        self.reopen: set[str] = set()
        self.stale = False  # a rebuild failed: the loop must rebuild the owned partitions
        self._stopping = stopping
        self._rebuilding = False
        #: set once the first assignment's runs are rebuilt: from then on, which runs this
        #: member owns is known (Engine.wait asks before choosing who answers)
        self.settled = asyncio.Event()

    def partition_of(self, run_id: str) -> int:
        """The history partition of ``run_id``."""
        return partition_for(run_id, self.partitions)

    def owns(self, run_id: str) -> bool:
        """Whether this member owns ``run_id``'s history partition right now."""
        if self.consumer is None or self._rebuilding:
            return False
        tp = TopicPartition(self._topic, self.partition_of(run_id))
        return tp in self.consumer.assignment()

    def knows(self, run_id: str) -> bool:
        """Whether ``run_id`` is a run of the owned partitions, running or ended (tombstoned)."""
        return run_id in self.runs or self.is_ended(run_id)

    def is_ended(self, run_id: str) -> bool:
        """Whether ``run_id`` has ended and been evicted here (a tombstone stands for it)."""
        return self.ended.contains(self.partition_of(run_id), run_id)

    def add(self, run_id: str) -> RunState:
        """A new state for ``run_id``, held from now on."""
        state = self.runs[run_id] = RunState(run_id=run_id)
        self._by_partition.setdefault(self.partition_of(run_id), set()).add(run_id)
        return state

    def tombstone(self, state: RunState) -> None:
        """Replace the state of ``state``'s run, which has ended, with a tombstone."""
        run_id = state.run_id
        part = self.partition_of(run_id)
        self.runs.pop(run_id, None)
        self.parked.pop(run_id, None)
        self._by_partition.get(part, set()).discard(run_id)
        self.ended.add(part, state)

    # -- the group's listener ------------------------------------------------------------------

    async def on_assigned(self, partitions: frozenset[TopicPartition]) -> None:
        """Rebuild the runs of newly owned partitions from the log, then act on them."""
        try:
            await self._rebuild(partitions)
            self.settled.set()
        except Exception:
            if self._stopping.is_set():
                return  # the consumer is going away; the next owner rebuilds
            # The group swallows listener errors, so a half-done rebuild (runs missing, retry
            # timers not re-armed: runs that never move again) would stand. The loop retries.
            log.warning(
                "orchestrator: rebuilding %d partitions failed; retrying",
                len(partitions),
                exc_info=True,
            )
            self.stale = True

    async def on_revoked(self, partitions: frozenset[TopicPartition]) -> None:
        """Append what was decided, then forget runs of partitions another member now owns."""
        with contextlib.suppress(Exception):
            await self._outbox.drain()
        self._forget(partitions)

    async def rebuild_all(self) -> None:
        """Rebuild every owned partition (after a failed rebuild or loop step)."""
        if self.consumer is None:
            return
        with contextlib.suppress(Exception):
            await self.on_assigned(self.consumer.assignment())

    def _forget(self, partitions: Iterable[TopicPartition]) -> None:
        forgotten: set[str] = set()
        for tp in partitions:
            runs = self._by_partition.pop(tp.partition, set())
            for run_id in runs:
                self.runs.pop(run_id, None)
                self.parked.pop(run_id, None)
            self.ended.forget(tp.partition)
            forgotten |= runs
        self._owner.forgotten(forgotten)

    async def reopen_runs(self, touched: dict[str, RunState]) -> None:
        """Fold the runs of :attr:`reopen` again from their partitions, then the retry with them.

        The partitions are read to their current end, which includes the retry requests (they
        were read from the log) and anything after them; events the loop reads later are then
        duplicates the fold ignores.
        """
        wanted, self.reopen = self.reopen, set()
        reopened: list[RunState] = []
        for part, state in await refold(self._log, self._topic, self.partitions, wanted):
            if not self.ended.remove(part, state.run_id):
                continue  # the partition moved or was rebuilt while it was read
            self.runs[state.run_id] = touched[state.run_id] = state
            self._by_partition.setdefault(part, set()).add(state.run_id)
            reopened.append(state)
        log.info("orchestrator reopened %d ended runs for a retry", len(reopened))
        self._owner.resume([s for s in reopened if not s.terminal])

    def reopens(self, event: h.HistoryEvent) -> bool:
        """For an event of a tombstoned run: note the run for :meth:`reopen_runs` if the event
        is its next retry. Whether the run is tombstoned (the event is then not folded)."""
        part = self.partition_of(event.run_id)
        if not self.ended.contains(part, event.run_id):
            return False
        # Ended: a duplicate RunRequested must not start it again; only the next retry
        # changes it, after the loop has folded the run again (reopen_runs).
        if self.ended.reopens(part, event):
            self.reopen.add(event.run_id)
        return True

    async def _rebuild(self, partitions: frozenset[TopicPartition]) -> None:
        if not partitions:
            return
        self._rebuilding = True  # no local fast path while states are re-read
        try:
            await self._rebuild_now(partitions)
        finally:
            self._rebuilding = False

    async def _rebuild_now(self, partitions: frozenset[TopicPartition]) -> None:
        with contextlib.suppress(Exception):
            await self._outbox.drain()  # the log must hold every decision before it is re-read
        assert self.consumer is not None
        if partitions >= self.consumer.assignment():
            self._outbox.trust()  # every owned state is read again from the log below
        self._forget(partitions)
        by_partition = await self._log.read_partitions({tp: 0 for tp in partitions})
        live: list[RunState] = []
        events = ended = 0
        for tp in sorted(by_partition):
            records = by_partition.pop(tp)  # let each partition's records go once folded
            touched: dict[str, RunState] = {}
            for record in records:
                self._owner.fold_record(record.value, touched)
            await self.consumer.seek(tp, records[-1].offset + 1 if records else 0)
            events += len(records)
            # Evicted per partition, so at most one partition's ended states are held at once.
            for state in touched.values():
                if state.terminal:
                    self.tombstone(state)
                    ended += 1
                else:
                    live.append(state)
        orphans = self._owner.resume(live)
        log.info(
            "orchestrator owns %d partitions: %d events, %d runs, %d running, %d eager "
            "attempts re-dispatched",
            len(partitions),
            events,
            ended + len(live),
            len(live),
            orphans,
        )
        self._owner.advance(live)
