"""Which offsets of a partition may be committed when records finish out of order."""

from __future__ import annotations

from collections.abc import Iterable

from deerflow.log.base import TopicPartition


class OffsetTracker:
    """Tracks records in flight per partition; the committable offset is the oldest unfinished.

    Records of one partition may finish in any order; committing past an unfinished one would
    lose it on a crash, so the commit position only moves over a contiguous finished prefix.
    """

    def __init__(self) -> None:
        self._inflight: dict[TopicPartition, set[int]] = {}
        self._highest_done: dict[TopicPartition, int] = {}
        self._last_committed: dict[TopicPartition, int] = {}

    def begin(self, tp: TopicPartition, offset: int) -> None:
        """A record was handed out."""
        self._inflight.setdefault(tp, set()).add(offset)

    def done(self, tp: TopicPartition, offset: int) -> None:
        """A record finished (its outcome is durable)."""
        inflight = self._inflight.get(tp)
        if inflight is None or offset not in inflight:
            return  # the partition was revoked meanwhile
        inflight.discard(offset)
        if offset > self._highest_done.get(tp, -1):
            self._highest_done[tp] = offset

    def committable(self) -> dict[TopicPartition, int]:
        """Per partition, the next offset to deliver after a restart, where it moved."""
        result: dict[TopicPartition, int] = {}
        for tp, highest in self._highest_done.items():
            inflight = self._inflight.get(tp)
            position = min(inflight) if inflight else highest + 1
            if position > self._last_committed.get(tp, -1):
                result[tp] = position
        return result

    @property
    def dirty(self) -> bool:
        """Whether a commit would move some partition forward."""
        return bool(self.committable())

    def committed(self, offsets: dict[TopicPartition, int]) -> None:
        """Record a successful commit."""
        self._last_committed.update(offsets)

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        """Drop revoked partitions: their unfinished records go to the next owner."""
        for tp in partitions:
            self._inflight.pop(tp, None)
            self._highest_done.pop(tp, None)
            self._last_committed.pop(tp, None)

    def inflight(self) -> int:
        """Records handed out and not finished."""
        return sum(len(v) for v in self._inflight.values())
