"""Where an orchestrator keeps the runs it evicted from memory: encoded, in a temporary SQLite db.

An owner holds at most ``max_held_runs`` run states in memory (:mod:`._hotset` picks which go).
An evicted run's state is encoded with the snapshot codec (:func:`~._snapcodec.encode`, the
bytes a snapshot holds for it) and kept here, keyed by run id, with its history partition.
The next record that concerns the run takes it out again (:meth:`ColdRuns.take`) before that
record is folded; a run is either held or cold, never both.

Why a private temporary SQLite database (``sqlite3.connect("")``): SQLite keeps its pages in a
bounded page cache and spills the rest to a file in the temporary directory (``SQLITE_TMPDIR``
or ``TMPDIR``) that it deletes when the connection closes. So an evicted run costs no memory
beyond its id in a timer (if it has one), nothing here outlives the process, and no stale file
can ever be read in place of the log: what this holds is only valid while this process owns the
run's partition. A new owner, or this process after a restart, loads the partition from its
snapshot (which includes the evicted runs: a base reads their bytes from here) and the log's
tail, as it always does. Dropping an evicted state and folding it again from the log instead
would cost a read of the partition (or of its newest snapshot) per resumed run.

Bounded by the live runs: a run's row goes when it is loaded back (an ending is folded into a
held state), and a partition's rows go when the partition is forgotten (revoked, or reloaded
after a failed append).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

__all__ = ["ColdRuns"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cold (
    run_id TEXT PRIMARY KEY,
    part INTEGER NOT NULL,
    state BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS cold_by_part ON cold (part);
"""


class ColdRuns:
    """Encoded states of evicted runs, by run id (see the module docstring).

    Args:
        cache_kib: the page cache's size in KiB (what it may hold in memory).
    """

    def __init__(self, *, cache_kib: int = 2048) -> None:
        # "": a private temporary database on disk, deleted when closed; never shared. Used
        # by the orchestrator's loop only, which may run in another thread than the one that
        # made the engine.
        self._db = sqlite3.connect("", isolation_level=None, check_same_thread=False)
        self._db.executescript(
            f"PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; "
            f"PRAGMA cache_size = -{int(cache_kib)};" + _SCHEMA
        )
        #: how many runs are kept here
        self.count = 0

    def __len__(self) -> int:
        return self.count

    def __contains__(self, run_id: object) -> bool:
        if not self.count or not isinstance(run_id, str):
            return False
        row = self._db.execute("SELECT 1 FROM cold WHERE run_id = ?", (run_id,)).fetchone()
        return row is not None

    def put(self, runs: Iterable[tuple[str, int, bytes]]) -> None:
        """Keep ``runs``: (run id, partition, encoded state) each, replacing what was kept."""
        rows = list(runs)
        if not rows:
            return
        db = self._db
        db.execute("BEGIN")
        try:
            # A plain insert: a run is held or kept here, never both (the owner takes a run
            # out before it holds it again), so a second row for it is a defect, not a case.
            db.executemany("INSERT INTO cold VALUES (?, ?, ?)", rows)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self.count += len(rows)

    def peek(self, run_id: str) -> bytes | None:
        """The encoded state of ``run_id`` if it is kept here (it stays)."""
        if not self.count:
            return None
        row = self._db.execute("SELECT state FROM cold WHERE run_id = ?", (run_id,)).fetchone()
        return None if row is None else bytes(row[0])

    def take(self, run_id: str) -> bytes | None:
        """The encoded state of ``run_id``, no longer kept here (None: it was not)."""
        if not self.count:
            return None
        row = self._db.execute(
            "DELETE FROM cold WHERE run_id = ? RETURNING state", (run_id,)
        ).fetchone()
        if row is None:
            return None
        self.count -= 1
        return bytes(row[0])

    def ids(self, partition: int) -> list[str]:
        """The ids of the runs of ``partition`` kept here."""
        if not self.count:
            return []
        rows = self._db.execute("SELECT run_id FROM cold WHERE part = ?", (partition,))
        return [run_id for (run_id,) in rows]

    def count_in(self, partition: int) -> int:
        """How many runs of ``partition`` are kept here."""
        if not self.count:
            return 0
        row = self._db.execute("SELECT COUNT(*) FROM cold WHERE part = ?", (partition,))
        return int(row.fetchone()[0])

    def drop(self, partitions: Iterable[int]) -> None:
        """Forget the runs of ``partitions`` (no longer owned, or about to be read again)."""
        if not self.count:
            return
        self._db.executemany("DELETE FROM cold WHERE part = ?", [(p,) for p in partitions])
        self.count = self._count()

    def close(self) -> None:
        """Close the database (SQLite deletes its file)."""
        self._db.close()
        self.count = 0

    def _count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM cold").fetchone()[0])
