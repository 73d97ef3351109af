"""Where the attempts of one decision go: run here now (eager), or which task partitions.

A fan-out sent round-robin over every partition of the task queue gives each worker a share of
it in proportion to the partitions it consumes. The split below keeps those shares and only
changes how the local worker's share arrives: as many of them as it has free slots start at
once (no produce, no consume, no broker round trip), the rest of its share waits on its own
partitions, and the other workers' shares go to theirs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


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
