"""The newest records of each partition, as this process knows them, to read without the file.

A SQLite log's readers in the process that wrote the records (the orchestrator reading back
the decisions and outcomes it has just appended) would otherwise fetch them from the file: a
trip to the SQLite thread, a query, and every record built again. :class:`RecentRecords` keeps,
per partition, a window of the latest records: contiguous offsets ``[start, end)`` known to be
exactly what the file holds there, since offsets never change once written. Its ``end`` is
only as fresh as the last read of the file (another process may have appended since), so the
storage answers from it only for a short while after a read (see
:meth:`RecentRecords.fetch`).

Bounded: a window keeps at most ``max_records`` records and ``max_bytes`` of values.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from deerflow.log.base import Message, Record, TopicPartition


@dataclass
class _Window:
    start: int
    records: list[Record] = field(default_factory=list)
    size: int = 0  # bytes of the records' values

    @property
    def end(self) -> int:
        return self.start + len(self.records)


class RecentRecords:
    """Per-partition windows of the newest records; see the module docstring.

    Args:
        max_records: records kept per partition at most.
        max_bytes: bytes of record values kept per partition at most.
    """

    def __init__(self, max_records: int = 4096, max_bytes: int = 4 << 20) -> None:
        self._windows: dict[TopicPartition, _Window] = {}
        self._max_records = max_records
        self._max_bytes = max_bytes

    def written(
        self, placed: Iterable[tuple[TopicPartition, int, Message]], timestamp_ms: int
    ) -> None:
        """Messages just made durable, with their partitions and offsets (ascending per
        partition), as the records a read would return."""
        window: _Window | None = None
        at: TopicPartition | None = None
        for tp, offset, message in placed:
            if tp != at:
                at, window = tp, self._windows.get(tp)
            if window is None or window.end != offset:
                # A gap (another process wrote in between, or nothing known yet): the window
                # starts again at this record.
                window = self._windows[tp] = _Window(offset)
            value = message.value
            window.records.append(
                Record(tp.topic, tp.partition, offset, message.key, value,
                       tuple(message.headers), timestamp_ms)
            )  # fmt: skip
            window.size += len(value)
            if len(window.records) > self._max_records or window.size > self._max_bytes:
                self._trim(window)

    def _trim(self, window: _Window) -> None:
        # Drop the older half at once, so trimming costs O(1) per record on average.
        keep = min(self._max_records // 2, len(window.records) // 2)
        dropped = window.records[: len(window.records) - keep]
        del window.records[: len(dropped)]
        window.start += len(dropped)
        window.size -= sum(len(record.value) for record in dropped)

    def read_end(self, tp: TopicPartition, end: int) -> None:
        """The file's end of ``tp`` as just read: a window behind it starts again, empty."""
        window = self._windows.get(tp)
        if window is None or window.end < end:
            self._windows[tp] = _Window(end)

    def forget(self) -> None:
        """Drop every window (the file was closed, or may have changed behind this process)."""
        self._windows.clear()

    def fetch(
        self,
        positions: Sequence[tuple[TopicPartition, int]],
        max_records: int,
        *,
        writing: bool = False,
    ) -> tuple[list[Record], dict[TopicPartition, int]] | None:
        """What :meth:`LocalStorage.fetch` returns, if the windows can tell it all; else ``None``.

        They can when every position lies within its partition's window and at least one
        window holds records after its position. With nothing new anywhere, the file is asked
        (another process may have written), unless this process is ``writing``: the file would
        answer only once that write is durable, and the write itself wakes the readers.
        """
        windows = []
        for tp, offset in positions:
            window = self._windows.get(tp)
            if window is None or not window.start <= offset <= window.end:
                return None
            windows.append(window)
        idle = all(
            offset == window.end for (_, offset), window in zip(positions, windows, strict=True)
        )
        if idle and not writing:
            return None
        out: list[Record] = []
        ends: dict[TopicPartition, int] = {}
        for (tp, offset), window in zip(positions, windows, strict=True):
            ends[tp] = window.end
            budget = max_records - len(out)
            if budget > 0 and offset < window.end:
                at = offset - window.start
                out.extend(window.records[at : at + budget])
        return out, ends
