"""Retention and archival: ended runs older than the retention age leave the live log.

The :class:`Archiver` service finds them through the run index (``to_archive``), writes each
run's history to the archive (:mod:`._archivestore`), reads it back and compares it byte for
byte, and only then records the run as archived in the index. On SQLite it next deletes the
archived runs' records from the store file and gives the pages back (incremental vacuum); on
Kafka the topic's own retention removes them (``docs/operations/scaling.md``).

With a blob store (:mod:`deerflow.payloads`), an archive holds the values themselves (the
run index reads the history through the claim check), and the run's blobs (its history's and
its task messages', each under a directory of its own, :func:`~deerflow.payloads.blob_prefix`)
are deleted once no record can refer to them: on SQLite once its history records are purged
and its task messages deleted too; on Kafka once retention (or ``delete_records``) moved the
start of its history partition past the run's last record and the start of every task
partition past the end it had when the run was noted (so past its every task message).

Every step is idempotent, in this order, so a crash anywhere loses nothing and duplicates
nothing: an archive object is named after its run and rewritten whole; a run is marked
archived only once its object verified; its records are deleted only once it is marked; a
run marked but not yet purged is purged at the next pass; its blobs are deleted only once no
record of it is left, and a run is marked swept only once they are, so one whose deletion was
cut short is swept again at the next pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import deerflow._codec as _codec
from deerflow.log.base import EventLog, Record, TopicPartition
from deerflow.log.sqlite import SqliteEventLog
from deerflow.payloads import BlobStore, ClaimCheck, PayloadLog, blob_prefix, stored_in
from deerflow.runtime._archivestore import (
    ArchiveError,
    ArchiveStore,
    decode_run,
    digest,
    encode_run,
)
from deerflow.runtime._runindex import RunIndex
from deerflow.runtime._runrows import Archived, RunRow, Unswept
from deerflow.runtime._service import BackgroundService

if TYPE_CHECKING:
    from deerflow.log.kafka import KafkaEventLog

log = logging.getLogger("deerflow.archive")

#: Seconds between two passes of a running archiver.
INTERVAL = 60.0
#: Seconds a started archiver waits before its first pass: a starting engine's first moments
#: go to taking over its partitions and its runs.
FIRST_PASS_DELAY = 10.0
#: Runs selected (and purged) per query.
BATCH = 200
#: Runs without a history in the log (not archivable) a pass steps over before it stops.
MAX_SKIPPED = 10_000
#: Runs written to the archive at once (each write waits on its disk or S3 round trip).
WRITERS = 8
#: Free pages given back to the file system per step (4 kB each).
RECLAIM_PAGES = 25_000
#: Beyond any offset: a run's task messages are deleted whatever their offsets.
_ALL = 2**62


def _kafka_log(log_: EventLog) -> KafkaEventLog | None:
    """``log_`` if it is a Kafka log. Its module is imported only then: it needs the ``kafka``
    extra, which an embedded-store install does not have."""
    if urlsplit(log_.url).scheme != "kafka":
        return None
    from deerflow.log.kafka import KafkaEventLog

    return log_ if isinstance(log_, KafkaEventLog) else None


class Archiver(BackgroundService):
    """Archives ended runs older than ``retention`` seconds, then purges them from SQLite.

    Args:
        index: the run index (selects the runs, records the archived ones).
        log_: the event log (purged when it is SQLite).
        archive: where the histories go.
        retention: the age, in seconds since a run ended, at which it is archived.
        interval: seconds between passes.
        purge: delete archived runs' records from an SQLite store.
        partitions: the history partitions whose runs this archiver takes (those its
            process's orchestrator owns, so that each run is archived by one process);
            ``None``: every run.
    """

    def __init__(
        self,
        index: RunIndex,
        log_: EventLog,
        archive: ArchiveStore,
        retention: float,
        *,
        interval: float = INTERVAL,
        purge: bool = True,
        partitions: Callable[[], Collection[int]] | None = None,
    ) -> None:
        super().__init__()
        self.index = index
        self.log = log_
        self.archive = archive
        self.retention = retention
        self.interval = interval
        # Purging deletes stored records: it needs the SQLite file under any payload codec.
        backend = stored_in(log_)
        self._sqlite = backend if isinstance(backend, SqliteEventLog) else None
        self.purge = purge and self._sqlite is not None
        self._kafka = _kafka_log(backend)
        codec = log_.codec if isinstance(log_, PayloadLog) else None
        #: where the claim check keeps large values: the archived runs' blobs are deleted
        self.blobs: BlobStore | None = codec.store if isinstance(codec, ClaimCheck) else None
        self._pass = asyncio.Lock()
        self._partitions = partitions

    async def _open(self) -> None:
        await self.index.start()

    async def _run(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), min(self.interval, FIRST_PASS_DELAY))
        while not self.stopping.is_set():
            try:
                archived, purged = await self.archive_once()
                swept = await self.sweep_once()
                if archived or purged or swept:
                    log.info(
                        "archived %d runs, purged %d from the log, deleted the blobs of %d",
                        archived,
                        purged,
                        swept,
                    )
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("archiving ended runs failed; trying again in %gs", self.interval)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), self.interval)

    async def archive_once(self, now: float | None = None) -> tuple[int, int]:
        """One pass: archive every run due, then purge the archived ones (SQLite).

        Returns ``(runs archived, runs purged)``.
        """
        async with self._pass:
            return await self._archive_all(now)

    async def _archive_all(self, now: float | None) -> tuple[int, int]:
        moment = (time.time() if now is None else now) - self.retention
        await self.index.sync()
        archived = 0
        skipped: set[str] = set()
        slots = asyncio.Semaphore(WRITERS)
        owned = None if self._partitions is None else self._partitions()
        while not self.stopping.is_set():
            due = await self.index.to_archive(moment, BATCH + len(skipped), owned)
            rows = [r for r in due if r.run_id not in skipped]
            if not rows or len(skipped) >= MAX_SKIPPED:
                break
            written = await asyncio.gather(*(self._archive(row, slots) for row in rows))
            done = [w for w in written if w is not None]
            await self.index.mark_archived(done)
            if self.blobs is not None:
                # Noted with their tasks (the sweep need not read them back) and the task
                # queue's ends now: after these runs were known ended, so past their messages.
                await self.index.note_unswept(await self._tasks_ends(), done)
            archived += len(done)
            skipped.update(r.run_id for r, w in zip(rows, written, strict=True) if w is None)
        purged = await self._purge() if self.purge else 0
        return archived, purged

    async def _archive(self, row: RunRow, slots: asyncio.Semaphore) -> Archived | None:
        """Write ``row``'s run to the archive and read it back; ``None`` if it has no history."""
        async with slots:
            records = await self.index.records(row.run_id)
            if not records:
                log.warning("run %s: its history is no longer in the log; not archived", row.run_id)
                return None
            data = encode_run(row.run_id, records[0].topic, row.partition, records)
            location = await asyncio.to_thread(self.archive.put, row.run_id, data)
            back = await asyncio.to_thread(self.archive.get, location)
        if back != data or len(decode_run(back, location).records) != len(records):
            raise ArchiveError(f"archive {location} of run {row.run_id} reads back differently")
        tasks = tuple(sorted(_task_ids(records)))
        return Archived(row.run_id, location, len(records), digest(data), row.last_offset, tasks)

    async def _purge(self) -> int:
        sqlite = self._sqlite
        assert sqlite is not None
        topic = self.index.topics.history
        purged = 0
        while not self.stopping.is_set():
            rows = await self.index.unpurged(BATCH)
            if not rows:
                break
            await sqlite.delete_keyed(
                [
                    (TopicPartition(topic, r.partition), r.run_id, r.first_offset, r.last_offset)
                    for r in rows
                ]
            )
            await self.index.mark_purged([r.run_id for r in rows])
            purged += len(rows)
        # in steps, so that appends get the file in between
        while not self.stopping.is_set() and await sqlite.reclaim(RECLAIM_PAGES):
            pass
        return purged

    async def sweep_once(self) -> int:
        """Delete the blobs of the archived runs no record can refer to any more; how many
        runs' blobs went. Nothing without a blob store, or on a log that deletes nothing."""
        if self.blobs is None or (self._sqlite is None and self._kafka is None):
            return 0
        async with self._pass:
            return await self._sweep_all(self.blobs)

    async def _sweep_all(self, blobs: BlobStore) -> int:
        topics = self.index.topics
        backend = stored_in(self.log)
        tasks = [
            TopicPartition(topics.tasks, p)
            for p in range(await backend.partition_count(topics.tasks))
        ]
        starts: dict[TopicPartition, int] = {}
        # Runs archived before their blobs were noted (by an older version): noted now.
        await self.index.note_unswept(await self._tasks_ends())
        if self._kafka is not None:
            count = await backend.partition_count(topics.history)
            history = [TopicPartition(topics.history, p) for p in range(count)]
            starts = await self._kafka.start_offsets([*tasks, *history])
        owned = None if self._partitions is None else self._partitions()
        # On Kafka, only the runs whose history left the log: the others are not read at all.
        left = None
        if self._kafka is not None:
            left = {tp.partition: o for tp, o in starts.items() if tp.topic == topics.history}
        slots = asyncio.Semaphore(WRITERS)
        swept = 0
        waiting: set[str] = set()
        while not self.stopping.is_set() and len(waiting) < MAX_SKIPPED:
            rows = await self.index.unswept(BATCH, owned, waiting, left)
            if not rows:
                break
            gone = await asyncio.gather(
                *(self._sweep(r, blobs, tasks, starts, slots) for r in rows)
            )
            done = [r.run_id for r, ok in zip(rows, gone, strict=True) if ok]
            await self.index.mark_swept(done)
            swept += len(done)
            waiting.update(r.run_id for r, ok in zip(rows, gone, strict=True) if not ok)
        return swept

    async def _sweep(
        self,
        row: Unswept,
        blobs: BlobStore,
        tasks: list[TopicPartition],
        starts: dict[TopicPartition, int],
        slots: asyncio.Semaphore,
    ) -> bool:
        """Delete ``row``'s blobs if no record of its run is left; whether they went."""
        topics = self.index.topics
        async with slots:
            if self._kafka is not None and not self._expired(row, tasks, starts):
                return False
            if self._sqlite is not None and not row.purged:
                return False
            try:
                task_ids = await self._tasks_of(row)
            except ArchiveError as exc:  # the others go on; this one is tried at each pass
                log.warning("run %s: its blobs are kept: %s", row.run_id, exc)
                return False
            if self._sqlite is not None:
                history = TopicPartition(topics.history, row.partition)
                ranges = [(history, row.run_id, row.first_offset, row.last_offset)]
                ranges += [(tp, f"{row.run_id}/{t}", 0, _ALL) for tp in tasks for t in task_ids]
                # Task messages of an ended run are read by no one; a partition's last record,
                # kept at the purge, goes once another follows it.
                await self._sqlite.delete_keyed(ranges)
                if await self._sqlite.count_keyed(ranges):
                    return False
            await blobs.delete_prefix(blob_prefix(topics.history, row.run_id))
            for task_id in task_ids:
                await blobs.delete_prefix(blob_prefix(topics.tasks, f"{row.run_id}/{task_id}"))
        return True

    def _expired(
        self, row: Unswept, tasks: list[TopicPartition], starts: dict[TopicPartition, int]
    ) -> bool:
        """Whether the run's history records and task messages have all left Kafka."""
        history = TopicPartition(self.index.topics.history, row.partition)
        if starts.get(history, 0) <= row.last_offset:
            return False
        ends = {int(p): int(o) for p, o in _codec.loads(row.tasks_ends).items()}
        return all(starts.get(tp, 0) >= ends.get(tp.partition, 0) for tp in tasks)

    async def _tasks_ends(self) -> dict[int, int]:
        """The task queue's end offset per partition (Kafka; ``{}`` elsewhere)."""
        if self._kafka is None:
            return {}
        topic = self.index.topics.tasks
        count = await self._kafka.partition_count(topic)
        ends = await self._kafka.true_ends([TopicPartition(topic, p) for p in range(count)])
        return {tp.partition: offset for tp, offset in ends.items()}

    async def _tasks_of(self, row: Unswept) -> set[str]:
        """The ids of the tasks ``row``'s run dispatched: noted as it was archived, else as
        its archive tells them."""
        if row.tasks is not None:
            return {str(t) for t in _codec.loads(row.tasks)}
        data = await asyncio.to_thread(self.archive.get, row.location)
        return _task_ids(decode_run(data, row.location).records)


def _task_ids(records: Sequence[Record]) -> set[str]:
    """The ids of the tasks a run's history ``records`` name (its task messages' keys)."""
    found: set[str] = set()
    for record in records:
        event = _codec.loads(record.value)
        task_id = event.get("task_id") if isinstance(event, dict) else None
        if isinstance(task_id, str):
            found.add(task_id)
    return found
