"""Ended runs of an orchestrator's partitions: tombstones instead of whole run states.

A long-lived orchestrator must not hold the state of every run it ever finished (params, input,
every task's output, the ids of every event folded). Once a run has ended and everything decided
for it is appended, its state is dropped and a tombstone stays: the run id and the one retry
number that could reopen it. That is all the fold would still look at, since it ignores every
event of an ended run except a ``RunRequested`` (a duplicate: ignored) and the next
``RunRetryRequested`` of a failed run. For that retry the run is folded again from its history
partition (:func:`refold`).

Tombstones are bounded: one is kept for ``window`` seconds after its run's end (the end time
the history records) and a partition keeps at most ``limit`` of them, the oldest dropped
first. Within those bounds a duplicate ``RunRequested`` of an ended run is ignored; after
them, the owner no longer knows the run and the duplicate starts it again under its id.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Container, Iterable, Iterator

from deerflow.core import history as h
from deerflow.core.state import RunState, fold, next_retry
from deerflow.log.base import EventLog, TopicPartition, partition_for

DEDUPE_WINDOW = 7 * 24 * 3600.0  # seconds a tombstone is kept after its run's end
DEDUPE_LIMIT = 100_000  # tombstones kept per history partition at most


class EndedRuns:
    """Tombstones of ended runs by history partition, and the ended runs awaiting one.

    Args:
        window: seconds a tombstone is kept after its run ended.
        limit: tombstones kept per partition at most (the oldest go first).
        clock: the time now, in seconds since the epoch (as events record it).
    """

    def __init__(
        self,
        *,
        window: float = DEDUPE_WINDOW,
        limit: int = DEDUPE_LIMIT,
        clock: Callable[[], float] = h.now,
    ) -> None:
        self.window = window
        self.limit = limit
        self._clock = clock
        #: per partition, in the order the runs ended: run id -> (reopening retry, end time)
        self._by_partition: dict[int, dict[str, tuple[int, float]]] = {}
        self._ending: deque[tuple[int, str]] = deque()
        self._last_ending: dict[str, int] = {}  # of each run in _ending

    def __len__(self) -> int:
        return sum(map(len, self._by_partition.values()))

    def count(self, partition: int) -> int:
        """How many tombstones ``partition`` has (expired ones included until dropped)."""
        return len(self._by_partition.get(partition, ()))

    def add(self, partition: int, state: RunState) -> None:
        """Keep a tombstone for ``state``, an ended run of ``partition``."""
        # As in the fold, only the next retry of a failed run reopens it, so stale or
        # duplicate retry requests cost no read of the partition.
        ended_at = state.finished_at if state.finished_at is not None else self._clock()
        self.keep(partition, state.run_id, next_retry(state), ended_at)

    def keep(self, partition: int, run_id: str, reopened_by: int, ended_at: float) -> None:
        """Keep a tombstone as :meth:`kept` lists it."""
        self.keep_all(partition, [(run_id, reopened_by, ended_at)])

    def keep_all(self, partition: int, tombstones: Iterable[tuple[str, int, float]]) -> None:
        """Keep tombstones as :meth:`kept` lists them (a snapshot's), oldest first; the
        bounds are applied once, after all of them."""
        ended = self._by_partition.setdefault(partition, {})
        for run_id, reopened_by, ended_at in tombstones:
            ended.pop(run_id, None)  # ended again: it moves to the end of the order
            ended[run_id] = (reopened_by, ended_at)
        self._expire(ended)

    def kept(self, partition: int) -> list[tuple[str, int, float]]:
        """The tombstones of ``partition``, oldest first: (run id, reopening retry, end time)."""
        ended = self._by_partition.get(partition, {})
        self._expire(ended)
        return [(run_id, retry, at) for run_id, (retry, at) in ended.items()]

    def _expire(self, ended: dict[str, tuple[int, float]]) -> None:
        """Drop the oldest tombstones beyond the limit and those older than the window."""
        while len(ended) > self.limit:
            del ended[next(iter(ended))]
        horizon = self._clock() - self.window
        while ended:
            oldest = next(iter(ended))
            if ended[oldest][1] >= horizon:
                break
            del ended[oldest]

    def get(self, partition: int, run_id: str) -> int | None:
        """The retry number that reopens tombstoned ``run_id`` (0: none), or None if not ended
        (or its tombstone expired)."""
        ended = self._by_partition.get(partition)
        if ended is None:
            return None
        found = ended.get(run_id)
        if found is None:
            return None
        if found[1] < self._clock() - self.window:
            self._expire(ended)
            return None
        return found[0]

    def entry(self, partition: int, run_id: str) -> tuple[str, int, float] | None:
        """``run_id``'s tombstone as :meth:`kept` lists it, or None if it has none."""
        if self.get(partition, run_id) is None:
            return None
        reopened_by, ended_at = self._by_partition[partition][run_id]
        return (run_id, reopened_by, ended_at)

    def contains(self, partition: int, run_id: str) -> bool:
        """Whether ``run_id`` of ``partition`` has a tombstone."""
        return self.get(partition, run_id) is not None

    def reopens(self, partition: int, event: h.HistoryEvent) -> bool:
        """Whether ``event`` would change its tombstoned run: it is the run's next retry."""
        reopened_by = self.get(partition, event.run_id)
        return (
            bool(reopened_by)
            and isinstance(event, h.RunRetryRequested)
            and event.retry == reopened_by
        )

    def remove(self, partition: int, run_id: str) -> bool:
        """Drop ``run_id``'s tombstone (the run is reopened); whether there was one."""
        ended = self._by_partition.get(partition)
        return ended is not None and ended.pop(run_id, None) is not None

    def forget(self, partition: int) -> None:
        """Drop the tombstones of a partition this orchestrator no longer owns."""
        self._by_partition.pop(partition, None)

    def ending(self, submission: int, run_ids: Iterable[str]) -> None:
        """Note runs that ended with decisions in ``submission`` (numbers never decrease)."""
        for run_id in run_ids:
            self._ending.append((submission, run_id))
            self._last_ending[run_id] = submission

    def durable(self, appended: int, among: Container[str]) -> list[str]:
        """Noted runs in ``among`` whose last ending went out in a submission up to
        ``appended`` (a run reopened and ended again counts by its later ending)."""
        durable = []
        for submission, run_id in self._ending:
            if submission > appended:
                break
            if run_id in among and self._last_ending[run_id] == submission:
                durable.append(run_id)
        return durable

    def due(self, appended: int) -> Iterator[str]:
        """Take the noted runs whose last ending went out in a submission up to ``appended``.

        A run reopened and ended again is not due before its later ending is appended.
        """
        while self._ending and self._ending[0][0] <= appended:
            submission, run_id = self._ending.popleft()
            if self._last_ending.get(run_id) == submission:
                del self._last_ending[run_id]
                yield run_id


async def refold(
    log: EventLog, topic: str, partitions: int, run_ids: Iterable[str]
) -> list[tuple[int, RunState]]:
    """``run_ids`` folded again from their history partitions, read up to their current end.

    Returns each run's partition and state. Only records keyed by a wanted run id are decoded
    (history records are keyed by run id).
    """
    states: dict[TopicPartition, dict[str, RunState]] = {}
    for run_id in run_ids:
        tp = TopicPartition(topic, partition_for(run_id, partitions))
        states.setdefault(tp, {})[run_id] = RunState(run_id=run_id)
    read = await log.read_partitions(dict.fromkeys(states, 0))
    for tp, records in read.items():
        wanted = states[tp]
        for record in records:
            state = wanted.get(record.key) if record.key is not None else None
            if state is None:
                continue
            with contextlib.suppress(ValueError):  # undecodable: ignored, as the loop does
                event = h.decode(record.value)
                if event.run_id == state.run_id:
                    fold(state, event)
    return [(tp.partition, state) for tp, wanted in states.items() for state in wanted.values()]
