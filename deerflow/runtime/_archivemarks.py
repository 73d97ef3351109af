"""Archive marks: that a run is archived, and its row, in a topic every run index reads.

A run index in a file of its own (one per process on Kafka) learns that a run is archived
from the log, not only from the process that archived it: the archiver appends a **mark** for
each run it archived to ``<prefix>.history.archived`` (keyed by run id; compacted on Kafka,
one record per run) before it records the run as archived in its own index, and every such
index follows that topic as it follows the history. A mark carries the run's row and search
attributes as well as where its archive lies, so an index built after the history's retention
removed a run's records (a new process, a lost index file) still lists the run, counts it and
reads it back from its archive. An index in the SQLite store file is one for every process
and needs no marks.

A mark is applied like a row folded from the history: it replaces a row only if it covers a
later offset, and an archive record only if the mark's archive covers as late an offset.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import deerflow._codec as _codec
from deerflow.log.base import EventLog, LogReader, Message, Record, TopicPartition
from deerflow.runtime._runrows import ROW_COLUMNS, Archived
from deerflow.runtime._service import BackgroundService

log = logging.getLogger("deerflow.runindex")

#: The format of a mark's value.
FORMAT = 1
#: Marks read and applied (one SQLite transaction) at a time.
BATCH = 2000


def encode_mark(
    topic: str,
    row: sqlite3.Row,
    attributes: Sequence[tuple[str, str, Any]],
    archived: Archived,
    at: float,
) -> Message:
    """The mark of ``archived`` (``row``: its run's row in the index; ``attributes``: its
    search attributes' stored ``(name, kind, value)``), as a message to ``topic``."""
    values = {name: row[name] for name in ROW_COLUMNS}
    values["body"] = bytes(values["body"]).decode()
    mark = {
        "format": FORMAT,
        "row": values,
        "attributes": [list(a) for a in attributes],
        "archive": {
            "location": archived.location,
            "records": archived.records,
            "sha256": archived.sha256,
            "last_offset": archived.last_offset,
            "archived_at": at,
        },
    }
    return Message(topic=topic, value=_codec.dumps(mark), key=archived.run_id)


@dataclass(frozen=True, slots=True)
class Mark:
    """A decoded mark: the run's row values (in :data:`ROW_COLUMNS` order), its search
    attributes as stored, and its archive."""

    row: tuple[Any, ...]
    attributes: list[tuple[str, str, Any]]
    archived: Archived
    archived_at: float


def decode_marks(records: Sequence[Record]) -> list[Mark]:
    """The marks these records hold; one of another format or not readable is skipped, with
    a warning."""
    marks: list[Mark] = []
    for record in records:
        try:
            mark = _codec.loads(record.value)
            if mark.get("format") != FORMAT:
                raise ValueError(f"format {mark.get('format')!r}")
            row = mark["row"]
            values = tuple(str(row[c]).encode() if c == "body" else row[c] for c in ROW_COLUMNS)
            archive = mark["archive"]
            archived = Archived(
                str(row["run_id"]),
                str(archive["location"]),
                int(archive["records"]),
                str(archive["sha256"]),
                int(archive["last_offset"]),
            )
            attributes = [(str(n), str(k), v) for n, k, v in mark["attributes"]]
            marks.append(Mark(values, attributes, archived, float(archive["archived_at"])))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("archive mark at offset %d is not readable: %s", record.offset, exc)
    return marks


class MarkFollower(BackgroundService):
    """Follows the marks topic into the visibility store, from the offsets it applied.

    Args:
        log_: the event log.
        topic: the marks topic.
        partitions: its partitions, when it is created (the history's count).
        offsets: reads the stored offsets (per partition) of the marks applied.
        apply: writes a batch of marks and the offsets after them, in one transaction.
        call: runs a store function on the index's thread.
    """

    def __init__(
        self,
        log_: EventLog,
        topic: str,
        partitions: int,
        offsets: Callable[[], dict[int, int]],
        apply: Callable[[Sequence[Mark], Mapping[int, int]], None],
        call: Callable[[Callable[[], Any]], Any],
    ) -> None:
        super().__init__()
        self._log = log_
        self.topic = topic
        self._count = partitions
        self._offsets = offsets
        self._apply = apply
        self._call = call
        self._partitions: list[TopicPartition] = []
        self._reader: LogReader | None = None
        self._polls = 0
        self._read_to: dict[TopicPartition, int] = {}
        self._changed = asyncio.Condition()

    async def _open(self) -> None:
        # compacted, kept forever: one mark per archived run stays
        count = await self._log.ensure_topic(
            self.topic, self._count, keep_forever=True, compact=True
        )
        self._partitions = [TopicPartition(self.topic, p) for p in range(count)]
        await self._open_reader()

    async def _open_reader(self) -> None:
        if self._reader is not None:
            await self._reader.stop()
        applied = await self._call(self._offsets)
        self._reader = self._log.reader(
            {tp: applied.get(tp.partition, 0) for tp in self._partitions}
        )
        await self._reader.start()

    async def _close(self) -> None:
        if self._reader is not None:
            await self._reader.stop()
            self._reader = None

    async def publish(self, marks: Sequence[Message]) -> None:
        """Append ``marks`` durably to the topic."""
        if marks:
            await self._log.append(marks)

    async def _run(self) -> None:
        while True:
            try:
                assert self._reader is not None
                records = await self._reader.poll(timeout=0.05, max_records=BATCH)
                if records:
                    ends = {r.partition: r.offset + 1 for r in records}
                    marks = decode_marks(records)
                    await self._call(functools.partial(self._apply, marks, ends))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("applying archive marks to the run index failed; retrying")
                await asyncio.sleep(1.0)
                with contextlib.suppress(Exception):
                    await self._open_reader()  # from what did reach the store
                continue
            async with self._changed:
                self._polls += 1
                # Positions as of what was applied: the reader's own may move on with the next
                # poll before a waiter looks (as the run index keeps its read-to offsets).
                self._read_to = {tp: self._reader.position(tp) for tp in self._partitions}
                self._changed.notify_all()

    async def sync(self) -> None:
        """Wait until every mark appended before this call is applied."""
        if self._reader is None:
            return
        written = {tp: end for tp in self._partitions if (end := self._log.written(tp)) is not None}

        def applied() -> bool:
            reader = self._reader
            return (
                reader is not None
                and self._polls >= target
                and all(reader.lag(tp) == 0 for tp in self._partitions)
                and all(self._read_to.get(tp, 0) >= end for tp, end in written.items())
            )

        async with self._changed:
            target = self._polls + 2
            await self._changed.wait_for(applied)
