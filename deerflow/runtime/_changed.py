"""Which runs changed since their partition's last snapshot: what its next delta holds.

The owner notes a run's id whenever its state, tombstone or parking changes (or may have).
Ids are noted unsorted, as they change; a snapshot of a partition takes that partition's
ids: those of runs held in memory by the partition's set of held runs, the others (evicted,
tombstoned or gone) by computing their partition once each.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable

__all__ = ["ChangedRuns"]


class ChangedRuns:
    """The ids of runs changed since their partition's last snapshot.

    Args:
        partition_of: the history partition of a run id.
    """

    def __init__(self, partition_of: Callable[[str], int]) -> None:
        self._partition_of = partition_of
        self._noted: set[str] = set()
        self._by_partition: dict[int, set[str]] = {}

    def __len__(self) -> int:
        return len(self._noted) + sum(map(len, self._by_partition.values()))

    def note(self, run_id: str) -> None:
        """``run_id`` changed: the next snapshot of its partition holds it."""
        self._noted.add(run_id)

    def note_all(self, run_ids: Iterable[str]) -> None:
        """``run_ids`` changed (a snapshot that took them was cut short)."""
        self._noted.update(run_ids)

    def take(self, partition: int, held: Container[str], in_partition: set[str]) -> set[str]:
        """Take the ids of ``partition``'s runs noted since they were last taken.

        Args:
            partition: the partition.
            held: the runs held in memory (their partition is known by ``in_partition``).
            in_partition: the runs of ``partition`` held in memory.
        """
        if self._noted:
            others = [run_id for run_id in self._noted if run_id not in held]
            for run_id in others:
                self._by_partition.setdefault(self._partition_of(run_id), set()).add(run_id)
            self._noted.difference_update(others)
        mine = self._noted & in_partition
        self._noted -= mine
        return mine | self._by_partition.pop(partition, set())

    def clear(self) -> None:
        """Forget every id noted (every partition's next snapshot is then a base)."""
        self._noted, self._by_partition = set(), {}
