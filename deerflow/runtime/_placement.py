"""Where the attempts of one decision go: run here now (eager), or which task partitions.

:class:`EagerPlacement` is the orchestrator's unit for it: it hands attempts to the worker of
this process when the split says so and it has a free slot, and otherwise builds their task
queue messages, round-robin over the partitions the split names.

A fan-out sent round-robin over every partition of the task queue gives each worker a share of
it in proportion to the partitions it consumes. The split below keeps those shares and only
changes how the local worker's share arrives: as many of them as it has free slots start at
once (no produce, no consume, no broker round trip), the rest of its share waits on its own
partitions, and the other workers' shares go to theirs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from deerflow.log.base import Message
from deerflow.runtime._context import TaskDispatch


class LocalWorker(Protocol):
    """A worker in this process that takes attempts directly (eager dispatch)."""

    def try_run(self, dispatch: TaskDispatch) -> bool:
        """Start running ``dispatch`` now if a slot is free; whether it did."""

    def free_slots(self) -> int:
        """How many attempts ``try_run`` would take right now."""

    def task_partitions(self) -> frozenset[int]:
        """The task queue's partitions the worker consumes."""

    def runs_eagerly(self, run_id: str, task_id: str, attempt: int) -> bool:
        """Whether that attempt is running here after an eager dispatch."""

    def outcome_durable(self, run_id: str, task_id: str, attempt: int) -> None:
        """That attempt's outcome was read from the log (its slot, if held here, is free)."""


@dataclass
class Placement:
    """The split of one decision's attempts, consumed in order as they are placed."""

    #: attempts still to hand to the local worker (eager dispatch)
    eager: int
    #: attempts still to queue on the local worker's partitions (after the eager ones)
    local: int
    #: the local worker's partitions, and the others' (empty: use every partition)
    mine: Sequence[int]
    others: Sequence[int]

    def next_partitions(self) -> Sequence[int]:
        """The partitions the next queued attempt goes to (round-robin among them)."""
        if self.local > 0:
            self.local -= 1
            return self.mine
        return self.others


def place(attempts: int, free_slots: int, owned: frozenset[int], partitions: int) -> Placement:
    """Split ``attempts`` decided at once, for a local worker with ``free_slots`` free slots
    that consumes the ``owned`` ones of the task queue's ``partitions``.
    """
    mine = sorted(p for p in owned if p < partitions)
    others = [p for p in range(partitions) if p not in owned]
    share = round(attempts * len(mine) / partitions) if partitions else 0
    eager = min(free_slots, share)
    return Placement(eager=eager, local=share - eager, mine=mine, others=others)


class EagerPlacement:
    """Places the attempts an orchestrator decides: on its local worker, or on the task queue.

    Contract: :meth:`split` is asked once per decision with how many attempts it schedules;
    :meth:`route` is then called for each of them, in order, and either starts the attempt on
    the local worker (returns ``None``: record it as eager) or returns its queue message.
    :meth:`orphans` gives queue messages for eager attempts found without an outcome on a
    rebuild that no local worker is running.

    Args:
        topic: the task queue's topic.
        partitions: how many partitions it has.
    """

    def __init__(self, topic: str, partitions: int = 1) -> None:
        self.topic = topic
        self.partitions = partitions
        #: a worker of this process for eager dispatch, or None
        self.local_worker: LocalWorker | None = None
        self._next = 0

    def split(self, attempts: int) -> Placement:
        """Where the ``attempts`` of one decision go: see :func:`place`."""
        local = self.local_worker
        if local is None or attempts == 0:
            return Placement(0, 0, (), ())
        if attempts == 1:  # no share to keep: run it here if a slot is free
            return Placement(1, 0, (), ())
        return place(attempts, local.free_slots(), local.task_partitions(), self.partitions)

    def route(self, dispatch: TaskDispatch, placement: Placement) -> Message | None:
        """Start ``dispatch`` on the local worker if ``placement`` has an eager share left and
        the worker a free slot (``None``), else its queue message."""
        if (
            placement.eager
            and self.local_worker is not None
            and self.local_worker.try_run(dispatch)
        ):
            placement.eager -= 1
            return None
        return self.message(dispatch, placement.next_partitions())

    def message(self, dispatch: TaskDispatch, among: Sequence[int] = ()) -> Message:
        """A queue message for ``dispatch``, on the next of ``among`` (default: all) in turn.

        Round-robin rather than by key: the attempts of one fan-out land evenly on the
        partitions, so workers that own equal shares of the partitions get equal shares of work.
        """
        index = self._next % (len(among) or self.partitions)
        self._next = index + 1
        return dispatch.message(self.topic, among[index] if among else index)

    def orphans(self, eager: Iterable[TaskDispatch]) -> list[Message]:
        """Queue messages for the ``eager`` attempts (found without an outcome on a rebuild)
        that no local worker is running.

        Their process died or lost the partition before the outcome was durable: no message on
        the task queue would ever deliver them again.
        """
        local = self.local_worker
        return [
            self.message(dispatch)
            for dispatch in eager
            if local is None
            or not local.runs_eagerly(dispatch.run_id, dispatch.task_id, dispatch.attempt)
        ]
