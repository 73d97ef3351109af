"""Taking an owner's snapshots: which partitions are due, what each holds, and writing it.

The part of :class:`~deerflow.runtime._ownership.Ownership` that snapshots its partitions as
records are folded (:meth:`SnapshotTaking.checkpoint`): a delta of the runs changed since a
partition's previous snapshot (:mod:`._changed`), or a base of all its runs, encoded a slice at
a time and written in the background (:mod:`._snapshots`) once the decisions it reflects are
durable.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from deerflow.core.state import RunState, next_retry
from deerflow.log.base import GroupConsumer, TopicPartition
from deerflow.runtime._changed import ChangedRuns
from deerflow.runtime._coldruns import ColdRuns
from deerflow.runtime._outbox import Outbox
from deerflow.runtime._snapcodec import encode
from deerflow.runtime._snapshots import PartitionImage, SnapshotFenced, Snapshots, Tombstone
from deerflow.runtime._tombstones import EndedRuns

log = logging.getLogger("deerflow.orchestrator")

#: Seconds a taken snapshot waits for the decisions it reflects to be durable; then it is
#: dropped (the next one is a base).
DURABLE_WAIT = 60.0

SLICE_SECONDS = 0.005  # the longest a snapshot encodes runs before the loop gets a turn


class SnapshotTaking:
    """Snapshot-taking of an :class:`~deerflow.runtime._ownership.Ownership`, which sets
    every attribute declared here."""

    consumer: GroupConsumer | None
    partitions: int
    runs: dict[str, RunState]
    cold: ColdRuns
    ended: EndedRuns
    parked: dict[str, str]
    reopen: set[str]
    loading: set[TopicPartition]
    snapshot_every: int
    partition_of: Callable[[str], int]
    _outbox: Outbox
    _snapshots: Snapshots | None
    _by_partition: dict[int, set[str]]
    _changes: int
    _folded: dict[int, int]
    _covered: dict[int, int]
    _stamps: dict[int, int | None]
    _writing: dict[int, asyncio.Task[None]]
    _taking: set[int]
    _changed: ChangedRuns

    async def checkpoint(
        self, partitions: Iterable[TopicPartition] | None = None, *, force: bool = False
    ) -> None:
        """Snapshot the owned partitions that folded ``snapshot_every`` records since their
        last one (``force``: every one of ``partitions`` that folded any).

        The outbox is drained first and nothing is taken unless every decision is durable, so
        a snapshot reflects only what the log holds. Taking it costs the runs that changed
        since the partition's last snapshot (a delta), or its live runs (a base); they are
        encoded a slice at a time, the loop getting a turn in between. Writing it happens in
        the background, one write per partition at a time (``force`` waits for it: an orderly
        hand-over).
        """
        if self._snapshots is None or self.consumer is None:
            return
        self._bound_dirty()
        owned = self.consumer.assignment() if partitions is None else frozenset(partitions)
        every = 1 if force else max(1, self.snapshot_every)
        due = [
            tp
            for tp in sorted(owned - self.loading)
            if self._folded.get(tp.partition, 0) >= every
            and tp.partition in self._covered
            and tp.partition not in self._taking
            and not _busy(self._writing.get(tp.partition))
        ]
        if not due or not self._trusted():
            return  # an append failed (or a rebuild is due): the next round tries
        writes = []
        for tp in due:
            self._taking.add(tp.partition)
            try:
                taken = await self._take(tp.partition)
            except Exception as exc:
                log.warning("orchestrator: no snapshot of partition %d: %s", tp.partition, exc)
                self._snapshots.reset(tp.partition)  # the changes it took are in no snapshot
                self._folded[tp.partition] = 0
                continue
            finally:
                self._taking.discard(tp.partition)
            if taken is None:
                continue  # cut short: the next round tries
            self._folded[tp.partition] = 0
            write = asyncio.create_task(self._write(tp.partition, *taken), name="deerflow-snapshot")
            self._writing[tp.partition] = write
            writes.append(write)
        if force and writes:
            await asyncio.wait(writes)

    def _trusted(self) -> bool:
        """Whether the held states may be snapshotted once the decisions they reflect are
        durable: no append failed since the last rebuild, and no rebuild is due."""
        return not (self._outbox.untrusted or self.reopen)

    def _bound_dirty(self) -> None:
        """Keep the changed runs' ids bounded while snapshots cannot be taken: past what the
        partitions hold, they are dropped and every partition's next snapshot is a base."""
        noted = len(self._changed)
        if self._snapshots is not None and noted > 2 * (len(self.runs) + len(self.cold)) + 10_000:
            self._changed.clear()
            for partition in list(self._by_partition):
                self._snapshots.reset(partition)

    def _take_dirty(self, partition: int) -> set[str]:
        """Take the ids of ``partition``'s runs changed since they were last taken."""
        return self._changed.take(partition, self.runs, self._by_partition.get(partition, set()))

    async def _take(
        self, partition: int
    ) -> tuple[int, PartitionImage, list[bytes], bool, int] | None:
        """What a snapshot of ``partition`` holds now: the offset it covers, its image (runs
        left out), the runs' encodings, whether it is a delta, and the outbox submission
        that must be durable before it is written. None: cut short (the partition moved, an
        append failed, or a rebuild is due)."""
        assert self._snapshots is not None
        changes, began = self._changes, time.perf_counter()
        held = longest = 0.0
        mark = time.perf_counter()
        in_memory = self._by_partition.get(partition, set())
        chain = self._snapshots.chain(partition)
        mine = self._take_dirty(partition)
        size = len(in_memory) + self.cold.count_in(partition) + self.ended.count(partition)
        delta = chain is not None and not chain.wants_base(len(mine), size)
        # The partition's evicted runs are live too: a base reads their bytes from cold.
        live = mine if delta else in_memory | set(self.cold.ids(partition))
        encoded: dict[str, bytes] = {}
        ended: dict[str, Tombstone] = {}
        gone: set[str] = set()
        # Encoded a slice at a time: other tasks run in between and may change runs (the
        # loop's own folding waits for this). Those they change are noted as changed and
        # encoded again below, once the outbox is drained: each run is then as it is at the
        # end, with every decision durable, as if taken at once.
        for run_id in sorted(live):
            self._classify(partition, run_id, encoded, ended, gone)
            if (spent := time.perf_counter() - mark) > SLICE_SECONDS:
                held, longest = held + spent, max(longest, spent)
                await asyncio.sleep(0)
                mark = time.perf_counter()
        spent = time.perf_counter() - mark
        held, longest = held + spent, max(longest, spent)
        if changes != self._changes or partition not in self._covered or not self._trusted():
            if partition in self._covered:  # still held: its next snapshot holds them
                self._changed.note_all(mine)
            return None
        mark = time.perf_counter()
        for run_id in self._take_dirty(partition):
            self._classify(partition, run_id, encoded, ended, gone)
        # The states are as of now: once every decision submitted so far is durable, they
        # reflect only what the log holds (later submissions are not waited for, so steady
        # traffic, which never leaves the outbox empty, does not hold snapshots back).
        upto = self._outbox.submitted
        covered = self._covered[partition]
        parked = {r: self.parked[r] for r in encoded if r in self.parked}
        image = PartitionImage(covered, [], [], parked, self._stamps.get(partition))
        if delta:
            image.ended, image.gone = sorted(ended.values(), key=lambda t: t[2]), sorted(gone)
        else:
            # Tombstones, then the ended runs not evicted yet, in the order they ended.
            kept = [t for t in self.ended.kept(partition) if t[0] not in ended]
            image.ended = (kept + sorted(ended.values(), key=lambda t: t[2]))[-self.ended.limit :]
        spent = time.perf_counter() - mark
        held, longest = held + spent, max(longest, spent)
        log.debug(
            "orchestrator: snapshot of partition %d taken (%s, %d runs) in %.1f ms, %.1f ms "
            "of it on the loop, %.1f ms at most at once",
            partition,
            "a delta" if delta else "a base",
            len(encoded),
            1000 * (time.perf_counter() - began),
            1000 * held,
            1000 * longest,
        )
        return covered, image, list(encoded.values()), delta, upto

    def _classify(
        self,
        partition: int,
        run_id: str,
        encoded: dict[str, bytes],
        ended: dict[str, Tombstone],
        gone: set[str],
    ) -> None:
        """Put ``run_id`` where a snapshot holds it now: encoded if running, a tombstone if
        ended, or gone."""
        encoded.pop(run_id, None)
        ended.pop(run_id, None)
        gone.discard(run_id)
        state = self.runs.get(run_id)
        if state is None and (cold := self.cold.peek(run_id)) is not None:
            encoded[run_id] = cold  # evicted: its bytes are what encode gives
        elif state is not None and not state.terminal:
            encoded[run_id] = encode(state)
        elif state is not None:  # ended, not evicted yet: a tombstone is what it needs
            ended[run_id] = (run_id, next_retry(state), ended_at(state))
        else:
            tombstone = self.ended.entry(partition, run_id)
            if tombstone is not None:
                ended[run_id] = tombstone
            else:
                gone.add(run_id)

    async def _write(
        self,
        partition: int,
        covered: int,
        image: PartitionImage,
        runs: list[bytes],
        delta: bool,
        upto: int,
    ) -> None:
        assert self._snapshots is not None
        try:
            if not await asyncio.wait_for(self._outbox.durable(upto), DURABLE_WAIT):
                raise RuntimeError("an append of the decisions it reflects failed")
            # In a thread: joining a large body is copying the loop need not wait for.
            body = await asyncio.to_thread(
                self._snapshots.body, partition, image, runs, delta=delta
            )
            del runs  # the body holds them now
            await self._snapshots.write(partition, self.partitions, covered, body, delta=delta)
            log.debug(
                "orchestrator: snapshot of partition %d at %d written (%s, %d bytes)",
                partition,
                covered,
                "a delta" if delta else "a base",
                len(body),
            )
        except SnapshotFenced as exc:  # it owns the partition no more
            self._snapshots.reset(partition)
            log.info("orchestrator: snapshot of partition %d not written: %s", partition, exc)
        except Exception as exc:  # the previous snapshot stays the newest: a longer tail
            self._snapshots.reset(partition)  # what this one held is in no snapshot
            log.warning(
                "orchestrator: writing a snapshot of partition %d failed: %s", partition, exc
            )

    async def finish_writes(self) -> None:
        """Wait for the snapshot writes in flight."""
        writes = [w for w in self._writing.values() if not w.done()]
        if writes:
            await asyncio.wait(writes)


def ended_at(state: RunState) -> float:
    """When ``state``'s run ended (0 if it records no end)."""
    return state.finished_at if state.finished_at is not None else 0.0


def _busy(task: asyncio.Task[None] | None) -> bool:
    return task is not None and not task.done()
