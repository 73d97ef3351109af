"""Retention and archival: ended runs older than the retention age leave the live log.

The :class:`Archiver` service finds them through the run index (``to_archive``), writes each
run's history to the archive (:mod:`._archivestore`), reads it back and compares it byte for
byte, and only then records the run as archived in the index. On SQLite it next deletes the
archived runs' records from the store file and gives the pages back (incremental vacuum); on
Kafka the topic's own retention removes them (``docs/operations/scaling.md``).

Every step is idempotent, in this order, so a crash anywhere loses nothing and duplicates
nothing: an archive object is named after its run and rewritten whole; a run is marked
archived only once its object verified; its records are deleted only once it is marked; a
run marked but not yet purged is purged at the next pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection

from deerflow.log.base import EventLog, TopicPartition
from deerflow.log.sqlite import SqliteEventLog
from deerflow.payloads import stored_in
from deerflow.runtime._archivestore import (
    ArchiveError,
    ArchiveStore,
    decode_run,
    digest,
    encode_run,
)
from deerflow.runtime._runindex import RunIndex
from deerflow.runtime._runrows import Archived, RunRow
from deerflow.runtime._service import BackgroundService

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
                if archived or purged:
                    log.info("archived %d runs, purged %d from the log", archived, purged)
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
        return Archived(row.run_id, location, len(records), digest(data), row.last_offset)

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
