"""Which runs an orchestrator holds: its history partitions' runs, loaded from the log.

Each history partition is owned by one member of the orchestrators' group at a time. The
member holds the state of each of its partitions' runs that has not ended, a tombstone for
each that has (:class:`~deerflow.runtime._tombstones.EndedRuns`), and the reasons runs are
parked. :class:`Ownership` is that table and the consumer group's listener that fills and
empties it; the orchestrator folds and decides on it. A partition is loaded from its newest
snapshot (:mod:`deerflow.runtime._snapshots`) and the records after it, and snapshots are
written as records are folded (the runs changed since the last one: :mod:`._changed`). At
most ``max_held_runs`` states are held in memory; idle runs past it wait encoded in
:mod:`._coldruns` until a record concerns them (:mod:`._hotset` picks them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import Protocol

from deerflow.core import history as h
from deerflow.core.state import RunState, shared
from deerflow.log.base import EventLog, GroupConsumer, Record, TopicPartition, partition_for
from deerflow.runtime._changed import ChangedRuns
from deerflow.runtime._coldruns import ColdRuns
from deerflow.runtime._hotset import MAX_HELD_RUNS, HotSet
from deerflow.runtime._outbox import Outbox
from deerflow.runtime._snapcodec import decode, encode
from deerflow.runtime._snapshots import PartitionImage, Snapshots, snapshot_invalid
from deerflow.runtime._snaptaking import SnapshotTaking, ended_at
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


class Ownership(SnapshotTaking):
    """The owned partitions' runs, and their loading from the log on assignment.

    Contract: :meth:`on_assigned` only notes the new partitions as *loading* and pauses them,
    so the group's rebalance callback never runs a long read (which could exceed the poll
    interval and loop rebalancing). The orchestrator's loop then calls :meth:`load_pending`:
    it drains the outbox, forgets what it held of the partitions, loads each one's newest
    valid snapshot (:mod:`._snapshots`) and folds the partition's records after it through
    ``owner.fold_record`` (from offset 0 where there is none), moves the consumer past what it
    read, keeps tombstones for ended runs and hands the others to ``owner.resume`` and
    ``owner.advance``. A failed load is retried by the loop. :meth:`on_revoked` drains the
    outbox, writes a snapshot of the partitions that changed and forgets them. While a
    partition loads, :meth:`owns` is false for its runs (no local fast path on half-read
    state). :meth:`checkpoint` writes snapshots every ``snapshot_every`` records folded: a delta
    of the runs :meth:`changed` since the partition's previous snapshot, or a base of all its
    runs when the chain is long enough (:class:`~deerflow.runtime._snapshots.Chain`).

    Args:
        log: the event log.
        topic: the history topic.
        owner: the orchestrator.
        outbox: its outbox (drained before partitions are re-read or given up).
        stopping: set when the orchestrator stops (a failed load is then not retried).
        snapshots: where partition snapshots go (None: none are written or read).
        snapshot_every: records folded in a partition between two of its snapshots.
        ended: the tombstones (bounded by its window and limit).
        max_held_runs: run states held in memory at most, as far as idle ones can be
            evicted (:mod:`._hotset`); the others wait in :attr:`cold` until a record
            concerns them (:meth:`get` loads them back).
    """

    def __init__(
        self,
        log_: EventLog,
        topic: str,
        owner: Owner,
        outbox: Outbox,
        stopping: asyncio.Event,
        *,
        snapshots: Snapshots | None = None,
        snapshot_every: int = 5000,
        ended: EndedRuns | None = None,
        max_held_runs: int = MAX_HELD_RUNS,
    ) -> None:
        self._log = log_
        self._topic = topic
        self._owner = owner
        self._outbox = outbox
        #: the group's consumer of the history (set once joined)
        self.consumer: GroupConsumer | None = None
        #: how many partitions the history has (set once joined)
        self.partitions = 0
        #: states held in memory of the owned partitions' runs that have not ended (or not
        #: been tombstoned yet); idle ones past ``max_held_runs`` are in :attr:`cold`
        self.runs: dict[str, RunState] = {}
        #: which held runs were used last (the idle ones used least go first)
        self.hot = HotSet(max_held_runs)
        #: encoded states of the runs evicted from :attr:`runs`, until a record concerns them
        self.cold = ColdRuns()
        self._by_partition: dict[int, set[str]] = {}
        #: tombstones of ended runs: a dict entry each instead of a state
        self.ended = ended if ended is not None else EndedRuns()
        #: runs whose loaded definition differs from theirs, with what changed (they wait)
        self.parked: dict[str, str] = {}
        #: ended runs an operator asked to retry: the loop folds them again from the log
        self.reopen: set[str] = set()
        #: owned partitions not loaded yet (the loop loads them; their runs are not owned yet)
        self.loading: set[TopicPartition] = set()
        self._changes = 0  # assignments and revocations so far: a load spanning one is redone
        self._loader: asyncio.Task[None] | None = None
        self._stopping = stopping
        self._snapshots = snapshots
        self.snapshot_every = snapshot_every
        self._folded: dict[int, int] = {}  # records folded per partition since its snapshot
        self._covered: dict[int, int] = {}  # per partition, the offset after the last folded
        self._stamps: dict[int, int | None] = {}  # per partition, that record's timestamp
        self._writing: dict[int, asyncio.Task[None]] = {}
        self._taking: set[int] = set()  # partitions whose snapshot is being encoded
        #: runs changed since their partition's last snapshot (what its next delta holds)
        self._changed = ChangedRuns(self.partition_of)
        #: set once the first assignment's runs are loaded: from then on, which runs this
        #: member owns is known (Engine.wait asks before choosing who answers)
        self.settled = asyncio.Event()

    def partition_of(self, run_id: str) -> int:
        """The history partition of ``run_id``."""
        return partition_for(run_id, self.partitions)

    def _holds(self, tp: TopicPartition) -> bool:
        return (
            self.consumer is not None
            and tp not in self.loading
            and tp in self.consumer.assignment()
        )

    def owns(self, run_id: str) -> bool:
        """Whether this member owns ``run_id``'s history partition right now."""
        # Asked for every event the process appends (observe): _holds and partition_of inlined.
        consumer = self.consumer
        if consumer is None:
            return False
        tp = TopicPartition(self._topic, partition_for(run_id, self.partitions))
        return tp not in self.loading and tp in consumer.assignment()

    def knows(self, run_id: str) -> bool:
        """Whether ``run_id`` is a run of the owned partitions, running or ended (tombstoned)."""
        return run_id in self.runs or self.is_ended(run_id) or run_id in self.cold

    def get(self, run_id: str) -> RunState | None:
        """The state of ``run_id`` if it is live here, loaded back first if it was evicted;
        noted as used now. Whoever folds into a run gets it here."""
        state = self.runs.get(run_id)
        if state is None:
            data = self.cold.take(run_id) if self.cold.count else None
            if data is None:
                return None
            state = self.runs[run_id] = shared(decode(data, RunState))
            self._by_partition.setdefault(self.partition_of(run_id), set()).add(run_id)
        self.hot.touch(run_id)
        return state

    async def evict_idle(self) -> int:
        """Evict the least recently used idle runs past ``max_held_runs`` to :attr:`cold`, in
        slices with the loop's turn between them (:mod:`._hotset`); how many went.

        Called between the loop's rounds, when no fold or decision is half done (each slice is
        picked and stored at once). Runs of a partition being loaded stay: its loader holds
        their states until it has resumed them.
        """
        evicted = 0
        while chosen := self.hot.pick(self.runs, self._evictable()):
            rows = [(s.run_id, self.partition_of(s.run_id), encode(s)) for s in chosen]
            self.cold.put(rows)
            for run_id, part, _ in rows:
                del self.runs[run_id]
                self._by_partition.get(part, set()).discard(run_id)
                self.hot.discard(run_id)
            evicted += len(rows)
            await asyncio.sleep(0)
        self.hot.settled(len(self.runs))
        return evicted

    def _evictable(self) -> Callable[[str], bool]:
        loading = {tp.partition for tp in self.loading}
        return lambda run_id: not loading or self.partition_of(run_id) not in loading

    def is_ended(self, run_id: str) -> bool:
        """Whether ``run_id`` has ended and been evicted here (a tombstone stands for it)."""
        return self.ended.contains(self.partition_of(run_id), run_id)

    def add(self, run_id: str) -> RunState:
        """A new state for ``run_id``, held from now on."""
        state = self.runs[run_id] = RunState(run_id=run_id)
        self._by_partition.setdefault(self.partition_of(run_id), set()).add(run_id)
        self.hot.touch(run_id)
        self.changed(run_id)
        return state

    def changed(self, run_id: str) -> None:
        """Note that ``run_id``'s state, tombstone or parking changed (or may have): its
        partition's next snapshot holds it. Whoever changes a held run says so."""
        if self._snapshots is not None:
            self._changed.note(run_id)

    def tombstone(self, state: RunState) -> None:
        """Replace the state of ``state``'s run, which has ended, with a tombstone."""
        run_id = state.run_id
        part = self.partition_of(run_id)
        self.runs.pop(run_id, None)
        self.hot.discard(run_id)
        self.parked.pop(run_id, None)
        self._by_partition.get(part, set()).discard(run_id)
        self.ended.add(part, state)
        self.changed(run_id)

    # -- the group's listener ------------------------------------------------------------------

    async def on_assigned(self, partitions: frozenset[TopicPartition]) -> None:
        """Note newly owned partitions for the loop to load; nothing long runs here."""
        self._changes += 1
        self._mark_loading(partitions)
        if not self.loading:
            self.settled.set()  # an empty share is known at once

    async def on_revoked(self, partitions: frozenset[TopicPartition]) -> None:
        """Append what was decided, snapshot what changed, then forget the partitions."""
        self._changes += 1
        await self._drain()
        loaded = partitions - self.loading
        self.loading -= partitions
        if loaded and not self._stopping.is_set():
            try:
                await self.checkpoint(loaded, force=True)
            except Exception as exc:  # the next owner folds a longer tail
                log.warning("orchestrator: no snapshot at hand-over: %s", exc)
        self._forget(partitions)

    async def _drain(self) -> None:
        """Wait until every decision is appended. After a failed append, whose decisions
        live only in the states held, every owned partition is read again (the loop would
        have done so, had this drain not taken the failure from it): else their runs would
        wait for decisions never written."""
        try:
            await self._outbox.drain()
        except Exception as exc:
            log.warning("orchestrator: an append failed (%s); reading every partition again", exc)
            if self.consumer is not None:
                self._mark_loading(self.consumer.assignment() - self.loading)

    async def rebuild_all(self) -> None:
        """Load every owned partition again (after a failed loop step)."""
        if self.consumer is not None:
            self._mark_loading(self.consumer.assignment())

    def _mark_loading(self, partitions: frozenset[TopicPartition]) -> None:
        if not partitions:
            return
        self._forget(partitions - self.loading)
        self.loading |= partitions
        assert self.consumer is not None
        # Best effort (a Kafka member cannot pause during its very first assignment): the
        # loop also drops records of loading partitions, and the loader seeks past them.
        with contextlib.suppress(Exception):
            self.consumer.pause(partitions)
        if self._loader is None or self._loader.done():
            self._loader = asyncio.create_task(self._load_all(), name="deerflow-ownership-load")

    async def _load_all(self) -> None:
        """Load pending partitions until none is left, retrying after a failure."""
        while self.loading and not self._stopping.is_set():
            try:
                await self.load_pending()
            except Exception:
                if self._stopping.is_set():
                    return  # the consumer is going away; the next owner loads
                # The partitions stay loading: their runs are not owned, nothing decides on
                # half-read state.
                log.warning("orchestrator: loading partitions failed; retrying", exc_info=True)
                await asyncio.sleep(1.0)

    async def stop_loading(self) -> None:
        """Cancel a load in progress (the orchestrator stops)."""
        loader, self._loader = self._loader, None
        if loader is not None and not loader.done():
            loader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await loader

    def _forget(self, partitions: Iterable[TopicPartition]) -> None:
        partitions = list(partitions)
        forgotten: set[str] = set()
        for tp in partitions:
            self._take_dirty(tp.partition)
            runs = self._by_partition.pop(tp.partition, set())
            runs.update(self.cold.ids(tp.partition))
            for run_id in runs:
                self.runs.pop(run_id, None)
                self.hot.discard(run_id)
                self.parked.pop(run_id, None)
            self.ended.forget(tp.partition)
            self._covered.pop(tp.partition, None)
            self._stamps.pop(tp.partition, None)
            self._folded.pop(tp.partition, None)
            forgotten |= runs
        self.cold.drop(tp.partition for tp in partitions)
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
            tp = TopicPartition(self._topic, part)
            if not state.requested or not self._holds(tp) or self.get(state.run_id) is not None:
                continue  # moved or reloaded while read, or no such run
            self.ended.remove(part, state.run_id)
            self.runs[state.run_id] = touched[state.run_id] = state
            self._by_partition.setdefault(part, set()).add(state.run_id)
            self.hot.touch(state.run_id)
            self.changed(state.run_id)
            reopened.append(state)
        log.info("orchestrator reopened %d ended runs for a retry", len(reopened))
        self._owner.resume([s for s in reopened if not s.terminal])

    def reopens(self, event: h.HistoryEvent) -> bool:
        """For an event of a tombstoned run: note the run for :meth:`reopen_runs` if the event
        is its next retry. Whether the run is tombstoned (the event is then not folded)."""
        part = self.partition_of(event.run_id)
        if not self.ended.contains(part, event.run_id):
            if isinstance(event, h.RunRetryRequested):
                # Unknown here: its tombstone outlived the dedupe window (or it never ran).
                # Folded again from the log, a failed run goes on; anything else stays.
                self.reopen.add(event.run_id)
                return True
            return False
        # Ended: a duplicate RunRequested must not start it again; only the next retry
        # changes it, after the loop has folded the run again (reopen_runs).
        if self.ended.reopens(part, event):
            self.reopen.add(event.run_id)
        return True

    # -- loading ---------------------------------------------------------------------------------

    async def load_pending(self) -> None:
        """Load the partitions noted by :meth:`on_assigned`: snapshot, then the tail."""
        if not self.loading or self.consumer is None:
            return
        await self._drain()  # the log must hold every decision before it is re-read
        changes, wanted = self._changes, frozenset(self.loading)
        images = await self._load_snapshots(wanted)
        by_partition = await self._read_tails(wanted, images)
        if changes != self._changes:
            return  # assigned or revoked meanwhile: the loop loads what is still pending
        if wanted >= self.consumer.assignment():
            self._outbox.trust()  # every owned state is read again from the log below
        self._forget(wanted)
        live: list[RunState] = []
        seek: dict[TopicPartition, int] = {}
        events = ended = 0
        for tp in sorted(by_partition):
            records = by_partition.pop(tp)  # let each partition's records go once folded
            seek[tp], ended_here = self._fold_partition(tp, images.get(tp.partition), records, live)
            events += len(records)
            ended += ended_here
        for tp, offset in seek.items():
            with contextlib.suppress(Exception):  # revoked meanwhile: the next owner reads it
                await self.consumer.seek(tp, offset)
        self.loading -= wanted
        with contextlib.suppress(Exception):
            self.consumer.resume(wanted)
        orphans = self._owner.resume(live)
        log.info(
            "orchestrator owns %d partitions: %d snapshots, %d events, %d runs, %d running, "
            "%d eager attempts re-dispatched; positions %s",
            len(wanted),
            len(images),
            events,
            ended + len(live),
            len(live),
            orphans,
            {tp.partition: offset for tp, offset in sorted(seek.items())},
        )
        self._owner.advance(live)
        if not self.loading:
            self.settled.set()

    def _fold_partition(
        self,
        tp: TopicPartition,
        image: PartitionImage | None,
        records: list[Record],
        live: list[RunState],
    ) -> tuple[int, int]:
        """Hold ``image`` and fold ``records`` after it; add the live runs to ``live``.

        Returns where the consumer goes on and how many runs ended.
        """
        touched: dict[str, RunState] = {}
        if image is not None:
            self._install(tp.partition, image, touched)
        elif self._snapshots is not None:
            self._snapshots.reset(tp.partition)  # its next snapshot is a base
        for record in records:
            self._owner.fold_record(record.value, touched)
        start = 0 if image is None else image.covered
        position = records[-1].offset + 1 if records else start
        self._folded[tp.partition] = len(records)  # a long tail makes a snapshot due soon
        self._covered[tp.partition] = position
        if records:
            self._stamps[tp.partition] = records[-1].timestamp_ms
        else:
            self._stamps[tp.partition] = None if image is None else image.stamp
        ended = 0
        # Evicted per partition, so at most one partition's ended states are held at once;
        # in the order they ended, so the oldest tombstones are the first to go.
        for state in sorted(touched.values(), key=ended_at):
            if state.terminal:
                self.tombstone(state)
                ended += 1
            else:
                live.append(state)
        return position, ended

    async def _load_snapshots(self, wanted: frozenset[TopicPartition]) -> dict[int, PartitionImage]:
        if self._snapshots is None:
            return {}
        try:
            return await self._snapshots.load(
                sorted(tp.partition for tp in wanted), self.partitions
            )
        except Exception as exc:  # the snapshot topic cannot be read: fold from the start
            log.warning("orchestrator: cannot read snapshots (%s); folding from offset 0", exc)
            return {}

    async def _read_tails(
        self, wanted: frozenset[TopicPartition], images: dict[int, PartitionImage]
    ) -> dict[TopicPartition, list[Record]]:
        """Each partition's records from its snapshot's covered offset (from 0 without one).

        The read starts one record early: finding the record just below the covered offset,
        with the timestamp the snapshot noted, shows the snapshot covers this history and no
        more than it holds (not a history recreated since). A snapshot failing that is dropped.
        """
        starts = {tp: _resume_at(images.get(tp.partition)) for tp in wanted}
        read = await self._log.read_partitions(starts)
        again: dict[TopicPartition, int] = {}
        for tp, start in starts.items():
            image = images.get(tp.partition)
            if image is None or image.covered == 0:
                continue
            records = read[tp]
            if records and records[0].offset == start:
                if image.stamp is None or records[0].timestamp_ms == image.stamp:
                    read[tp] = records[1:]
                    continue
                reason = f"the history's record at offset {start} is not the one it covered"
            else:
                reason = f"the history has no record at offset {start}"
            snapshot_invalid(tp.partition, reason)
            del images[tp.partition]
            again[tp] = 0
        if again:
            read.update(await self._log.read_partitions(again))
        return read

    def _install(self, partition: int, image: PartitionImage, touched: dict[str, RunState]) -> None:
        """Hold what a snapshot of ``partition`` holds; its runs count as touched."""
        runs = self._by_partition.setdefault(partition, set())
        for state in image.runs:
            self.runs[state.run_id] = touched[state.run_id] = state
            runs.add(state.run_id)
            self.hot.touch(state.run_id)
        self.ended.keep_all(partition, image.ended)
        self.parked.update(image.parked)

    # -- snapshots ---------------------------------------------------------------------------

    def fresh(self, records: list[Record]) -> list[Record]:
        """The records the loop should fold: none of a loading partition (its loader reads
        it) or below what was folded of it already (fetched before the loader moved the
        consumer on). Counts them per partition: snapshots are due by these counts. A record
        past the next one expected of its partition is logged: the records between were lost
        to this owner."""
        fresh = []
        loading = self.loading
        for record in records:
            part = record.partition
            covered = self._covered.get(part, -1)  # -1: nothing folded of it yet
            if (loading and record.tp in loading) or record.offset < covered:
                continue
            if covered >= 0 and record.offset > covered:
                log.warning(
                    "history partition %d: records %d to %d were skipped",
                    part,
                    covered,
                    record.offset - 1,
                )
            fresh.append(record)
            self._folded[part] = self._folded.get(part, 0) + 1
            self._covered[part] = record.offset + 1
            self._stamps[part] = record.timestamp_ms
        return fresh


def _resume_at(image: PartitionImage | None) -> int:
    return 0 if image is None else max(image.covered - 1, 0)
