"""The task records a worker polled and has no slot for yet, the next to start first.

Order: the highest priority first and, within one priority, the first polled (the queue's
order when no priority is used). A record's priority counts as ``aging`` seconds of waiting
here per point (a minute by default, as for runs queued at a flow-control gate), so an attempt
of lower priority waiting long enough starts before newer ones of higher priority: a steady
stream of high priority never starves it. Waiting is timed on this worker's clock from the
poll that brought the record, not from its append, so producers' clocks do not matter. The key
of a record never changes once it is queued, so a heap keeps the order.

The queue holds at most what the worker's prefetch lets it poll: it is bounded by the caller.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable

from deerflow.log.base import Record, TopicPartition
from deerflow.runtime._context import PRIORITY_HEADER

#: seconds of queueing one point of a task's priority is worth (as for runs: deerflow.flow)
AGING = 60.0


def priority_of(record: Record) -> int:
    """The priority a task-queue record carries in its header (0 without one, or a bad one)."""
    for name, value in record.headers:
        if name == PRIORITY_HEADER:
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


class ReadyQueue:
    """Polled task records waiting for a slot; :meth:`pop` gives the next to start.

    Args:
        aging: seconds of queueing one point of priority is worth (> 0, checked by the
            worker's settings).
    """

    __slots__ = ("_aging", "_heap", "_seq")

    def __init__(self, aging: float = AGING) -> None:
        self._aging = aging
        self._heap: list[tuple[float, int, Record]] = []
        # ties (one append time, one priority) keep the order the records were polled in
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, record: Record, now: float) -> None:
        """Queue ``record``, polled at ``now`` (monotonic seconds)."""
        order = now
        if record.headers:
            order -= priority_of(record) * self._aging
        heapq.heappush(self._heap, (order, next(self._seq), record))

    def pop(self) -> Record:
        """The next record to start (raises :class:`IndexError` when empty)."""
        return heapq.heappop(self._heap)[2]

    def drop(self, partitions: Iterable[TopicPartition]) -> None:
        """Forget the records of ``partitions`` (revoked: their next owner reads them again)."""
        gone = frozenset(partitions)
        kept = [entry for entry in self._heap if entry[2].tp not in gone]
        if len(kept) != len(self._heap):
            heapq.heapify(kept)
            self._heap = kept
