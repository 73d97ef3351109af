"""The visibility store: one SQLite row per run, its search attributes, and what is applied.

The run index writes here, in one transaction per batch of history records, the rows of the
runs those records changed and, per history partition, the offset of the next record to apply.
A process that opens the store later reads the rows (``deerflow runs list``, the dashboard)
without folding any history, and follows the history from the stored offsets: a restart applies
only the tail.

Rows are written monotonically: a row carries the offset of the last record folded into it and
is only replaced by a row folded further, so processes sharing one store file (the SQLite store
itself in embedded mode) may apply the same records in any order and the rows stay right.

The store is synchronous; the run index calls it on one thread of its own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import deerflow._codec as _codec
from deerflow.core.state import RUN_RUNNING, indexed_filters, indexed_values, status_of
from deerflow.errors import DeerflowError, RunNotFound
from deerflow.runtime._archivemarks import Mark
from deerflow.runtime._runrows import (
    ARCHIVE_SCHEMA,
    INT64,
    MIGRATIONS,
    ROW_COLUMNS,
    SCHEMA,
    SCHEMA_VERSION,
    STATUS,
    TABLES,
    Archived,
    Change,
    RunQuery,
    RunRow,
    Unswept,
    attribute_python,
    attribute_value,
    row_body,
    trigger_kind_and_name,
)

log = logging.getLogger("deerflow.runindex")

_INSERT_ROW = (
    f"INSERT INTO runindex_runs ({', '.join(ROW_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(ROW_COLUMNS))}) "
)


#: A row as a whole, replaced only by one covering a later offset (an archive mark's).
_UPSERT_ROW = (
    _INSERT_ROW
    + "ON CONFLICT (run_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in ROW_COLUMNS if c != "run_id")
    + " WHERE excluded.last_offset > runindex_runs.last_offset"
)


def _advance(c: sqlite3.Connection, topic: str, offsets: Mapping[int, int]) -> None:
    """Move the applied offsets of ``topic`` forward (never back)."""
    c.executemany(
        "INSERT INTO runindex_offsets VALUES (?, ?, ?) "
        "ON CONFLICT (topic, partition_id) DO UPDATE SET next_offset = "
        "MAX(next_offset, excluded.next_offset)",
        [(topic, p, o) for p, o in offsets.items()],
    )


def _upsert_archived(c: sqlite3.Connection, archived: Sequence[tuple[Archived, float]]) -> None:
    """Record runs as archived; a run's record is replaced only by an archive covering a
    later offset, and not once its records left the log."""
    c.executemany(
        "INSERT INTO runindex_archive VALUES (?, ?, ?, ?, ?, ?, NULL) "
        "ON CONFLICT (run_id) DO UPDATE SET location = excluded.location, "
        "records = excluded.records, sha256 = excluded.sha256, "
        "last_offset = excluded.last_offset, archived_at = excluded.archived_at "
        "WHERE purged_at IS NULL AND excluded.last_offset > last_offset",
        [(a.run_id, a.location, a.records, a.sha256, a.last_offset, at) for a, at in archived],
    )


class IndexCorrupt(DeerflowError):
    """The index file cannot be read as an index."""


class VisibilityStore:
    """The index's tables in an SQLite file (``:memory:`` for an in-memory index).

    Args:
        path: the file; in embedded mode the SQLite store file itself.
        identity: what the index is an index of (log URL and history topic): an index of
            something else is rebuilt.
        own_file: the file holds nothing but the index, so a corrupt one may be replaced.
    """

    def __init__(self, path: str, identity: str, *, own_file: bool) -> None:
        self.path = path
        self.identity = identity
        self.own_file = own_file
        self._conn: sqlite3.Connection | None = None
        #: whether opening found no usable index (new, rebuilt): everything is applied again
        self.fresh = False

    # -- opening -------------------------------------------------------------------------------

    def open(self) -> None:
        """Open (creating, or rebuilding a corrupt or foreign index with a warning)."""
        try:
            self._open()
        except sqlite3.DatabaseError as exc:
            self.close()
            if not self.own_file:
                raise IndexCorrupt(f"run index in {self.path} cannot be read: {exc}") from exc
            log.warning(
                "run index %s is corrupt (%s): rebuilding it from the history", self.path, exc
            )
            for suffix in ("", "-wal", "-shm", "-journal"):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(self.path + suffix)
            self._open()
            self.fresh = True

    def _open(self) -> None:
        if self.path != ":memory:" and self.own_file:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        self._conn = conn
        conn.row_factory = sqlite3.Row
        if self.path != ":memory:":
            # as the log does: a store file this creates can give archived runs' pages back
            conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
            conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL: the index can always be rebuilt from the history; a lost tail is
            # applied again from the offsets that did reach the disk.
            conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout = 30000")
        if self.own_file and self.path != ":memory:":
            conn.execute("PRAGMA quick_check").fetchone()
        had = {
            r[0]
            for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if r[0] in TABLES
        }
        meta: dict[str, str] = {}
        if "runindex_meta" in had:
            meta = dict(conn.execute("SELECT name, value FROM runindex_meta").fetchall())
        wanted = {"schema": str(SCHEMA_VERSION), "identity": self.identity}
        if had and meta.get("identity") == self.identity and meta != wanted:
            meta = self._migrate(meta)
        if had and meta != wanted:
            log.warning(
                "run index %s was built %s: rebuilding it from the history",
                self.path,
                f"for {meta.get('identity')}"
                if meta.get("schema") == wanted["schema"]
                else "by another version",
            )
            with self._transaction() as c:
                for table in TABLES:
                    c.execute(f"DROP TABLE IF EXISTS {table}")
            had = set()
        if not had:
            self.fresh = True
            conn.executescript(SCHEMA)
            conn.executemany("INSERT OR IGNORE INTO runindex_meta VALUES (?, ?)", wanted.items())
        conn.executescript(ARCHIVE_SCHEMA)

    def _migrate(self, meta: dict[str, str]) -> dict[str, str]:
        """Bring an index of an older schema to this one in place, when :data:`MIGRATIONS`
        lead there; the meta it has afterwards (unchanged when they do not)."""
        version = int(meta["schema"]) if meta.get("schema", "").isdigit() else None
        if version is None or version >= SCHEMA_VERSION:
            return meta
        steps = list(range(version, SCHEMA_VERSION))
        if any(step not in MIGRATIONS for step in steps):
            return meta
        with self._transaction() as c:
            for step in steps:
                for statement in MIGRATIONS[step]:
                    c.execute(statement)
            c.execute(
                "UPDATE runindex_meta SET value = ? WHERE name = 'schema'", (str(SCHEMA_VERSION),)
            )
        log.info("run index %s: schema %d migrated to %d", self.path, version, SCHEMA_VERSION)
        return {**meta, "schema": str(SCHEMA_VERSION)}

    def close(self) -> None:
        """Close the connection; idempotent."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @property
    def conn(self) -> sqlite3.Connection:
        """The open connection."""
        if self._conn is None:
            raise DeerflowError("the run index is not open")
        return self._conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    # -- writing -------------------------------------------------------------------------------

    def offsets(self, topic: str) -> dict[int, int]:
        """Per partition of ``topic``, the offset of the next record to apply."""
        rows = self.conn.execute(
            "SELECT partition_id, next_offset FROM runindex_offsets WHERE topic = ?", (topic,)
        )
        return {int(p): int(o) for p, o in rows}

    def apply(self, topic: str, changes: Sequence[Change], offsets: Mapping[int, int]) -> None:
        """Write the changed rows and the offsets they cover, in one transaction.

        A row is replaced only by one folded further; an offset only moves forward.
        """
        with self._transaction() as c:
            for change in changes:
                self._write_row(c, change)
            _advance(c, topic, offsets)

    @staticmethod
    def _write_row(c: sqlite3.Connection, change: Change) -> None:
        s = change.state
        kind, name = trigger_kind_and_name(s)
        body, output_size = row_body(s)
        extras = indexed_values(s)
        cur = c.execute(
            _INSERT_ROW + "ON CONFLICT (run_id) DO UPDATE SET "
            "status = excluded.status, parked = excluded.parked, "
            "finished_at = excluded.finished_at, error = excluded.error, "
            "failed_task = excluded.failed_task, extras = excluded.extras, "
            "retries = excluded.retries, events = excluded.events, "
            "output_size = excluded.output_size, last_offset = excluded.last_offset, "
            "body = excluded.body "
            "WHERE excluded.last_offset > runindex_runs.last_offset",
            (
                s.run_id,
                s.workflow,
                s.version,
                status_of(s),
                s.parked if s.status == RUN_RUNNING else None,
                kind,
                name,
                s.parent.run_id if s.parent else None,
                s.correlation_id,
                s.started_at or 0.0,
                s.finished_at,
                s.error,
                s.failed_task,
                _codec.dumps(extras).decode() if extras else None,
                s.retries,
                s.events,
                output_size,
                change.partition,
                change.first_offset,
                change.last_offset,
                body,
            ),
        )
        if cur.rowcount and s.search_attributes:
            c.executemany(
                "INSERT OR REPLACE INTO runindex_attributes VALUES (?, ?, ?, ?)",
                [
                    (s.run_id, attr, *attribute_value(attr, value))
                    for attr, value in s.search_attributes.items()
                ],
            )

    # -- reading -------------------------------------------------------------------------------

    def row(self, run_id: str) -> sqlite3.Row | None:
        """The row of ``run_id``, or ``None``."""
        found: sqlite3.Row | None = self.conn.execute(
            "SELECT * FROM runindex_runs WHERE run_id = ?", (run_id,)
        ).fetchone()
        return found

    def rows(self, run_ids: Iterable[str]) -> dict[str, sqlite3.Row]:
        """The rows of these runs, by id (absent ones left out)."""
        ids = list(run_ids)
        found: dict[str, sqlite3.Row] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self.conn.execute(
                f"SELECT * FROM runindex_runs WHERE run_id IN ({marks})", chunk
            ):
                found[row["run_id"]] = row
        return found

    def attributes(self, run_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The search attributes of these runs, as Python values, by run id."""
        found: dict[str, dict[str, Any]] = {}
        ids = list(run_ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for run_id, name, kind, value in self.conn.execute(
                "SELECT run_id, name, kind, value FROM runindex_attributes "
                f"WHERE run_id IN ({marks}) ORDER BY run_id, name",
                chunk,
            ):
                found.setdefault(run_id, {})[name] = attribute_python(kind, value)
        return found

    def query(self, q: RunQuery) -> list[sqlite3.Row]:
        """The rows ``q`` selects, newest first."""
        where, args = self._where(q)
        sql = "SELECT * FROM runindex_runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY started_at DESC, run_id DESC"
        if q.limit is not None:
            sql += " LIMIT ?"
            args.append(min(max(0, q.limit), INT64))  # SQLite's integers are 64-bit
        return list(self.conn.execute(sql, args))

    def _where(self, q: RunQuery) -> tuple[list[str], list[Any]]:
        where: list[str] = []
        args: list[Any] = []
        for sql, value in (
            ("workflow = ?", q.workflow),
            ("parent_run_id = ?", q.parent),
            ("started_at >= ?", q.since),
            ("started_at <= ?", q.until),
        ):
            if value is not None:
                where.append(sql)
                args.append(value)
        filters = q.extension_filters()
        if filters:
            known = indexed_filters()
            for name, value in filters.items():
                if name not in known:
                    raise ValueError(
                        f"no run filter {name!r} (filters of extensions: "
                        f"{', '.join(sorted(known)) or 'none'})"
                    )
                # A JSON path of two keys, each quoted: whatever the extension named them.
                where.append("json_extract(extras, ?) = ?")
                args += ["$.{}.{}".format(*(_codec.dumps(k).decode() for k in known[name])), value]
        if q.status is not None:
            where.append(STATUS.get(q.status, "status = ?"))
            args += [] if q.status in STATUS else [q.status]
        if q.trigger is not None:
            where.append("(trigger_kind = ? OR trigger_name = ?)")
            args += [q.trigger, q.trigger]
        for name, value in q.attributes.items():
            where.append(
                "run_id IN (SELECT run_id FROM runindex_attributes "
                "WHERE name = ? AND kind = ? AND value = ?)"
            )
            args += [name, *attribute_value(name, value)]
        if q.after is not None:
            where.append("(started_at < ? OR (started_at = ? AND run_id < ?))")
            started = self._started_at(q.after)
            args += [started, started, q.after]
        return where, args

    def _started_at(self, run_id: str) -> float:
        found = self.conn.execute(
            "SELECT started_at FROM runindex_runs WHERE run_id = ?", (run_id,)
        ).fetchone()
        if found is None:
            raise RunNotFound(f"no run {run_id!r} to list runs after")
        return float(found[0])

    def counts(self, q: RunQuery | None = None) -> dict[str, int]:
        """Runs by status (``parked`` apart from ``running``), among those ``q`` selects.

        Without filters, or by workflow only, read from counts kept with the rows (no scan).
        """
        q = q or RunQuery()
        if replace(q, workflow=None, limit=None) == RunQuery(limit=None):
            sql = "SELECT status, SUM(runs) FROM runindex_counts"
            rows = self.conn.execute(
                sql + (" WHERE workflow = ?" if q.workflow else "") + " GROUP BY status",
                (q.workflow,) if q.workflow else (),
            )
            return {s: int(n) for s, n in rows if n}
        where, args = self._where(q)
        sql = (
            "SELECT CASE WHEN status = 'running' AND parked IS NOT NULL THEN 'parked' "
            "ELSE status END AS s, COUNT(*) FROM runindex_runs"
        )
        if where:
            sql += " WHERE " + " AND ".join(where)
        return {s: int(n) for s, n in self.conn.execute(sql + " GROUP BY s", args)}

    def distinct(self, column: str, limit: int = 200) -> list[str]:
        """The distinct values of ``column`` (workflow, trigger_name, ...), sorted."""
        if column not in ("workflow", "trigger_kind", "trigger_name"):
            raise ValueError(column)
        rows = self.conn.execute(
            f"SELECT DISTINCT {column} FROM runindex_runs WHERE {column} IS NOT NULL "
            f"ORDER BY {column} LIMIT ?",
            (limit,),
        )
        return [r[0] for r in rows]

    def ids_starting(self, prefix: str, limit: int = 50) -> list[str]:
        """Run ids starting with ``prefix``, shortest first."""
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1) if prefix else None
        sql = "SELECT run_id FROM runindex_runs WHERE run_id >= ?"
        args: list[Any] = [prefix]
        if upper is not None:
            sql += " AND run_id < ?"
            args.append(upper)
        sql += " ORDER BY LENGTH(run_id), run_id LIMIT ?"
        args.append(limit)
        return [r[0] for r in self.conn.execute(sql, args)]

    def trigger_stats(self) -> list[tuple[str, int, sqlite3.Row]]:
        """Per trigger name: how many runs it started, and the row of its newest run."""
        found = []
        for name, runs in self.conn.execute(
            "SELECT trigger_name, COUNT(*) FROM runindex_runs "
            "WHERE trigger_name IS NOT NULL GROUP BY trigger_name ORDER BY trigger_name"
        ).fetchall():
            newest = self.conn.execute(
                "SELECT * FROM runindex_runs WHERE trigger_name = ? "
                "ORDER BY started_at DESC, run_id DESC LIMIT 1",
                (name,),
            ).fetchone()
            found.append((str(name), int(runs), newest))
        return found

    def ended_before(self, moment: float, limit: int = 1000) -> list[RunRow]:
        """Ended runs that finished before ``moment``, oldest first, with where their history
        lies (what retention and archival select)."""
        rows = self.conn.execute(
            "SELECT run_id, partition_id, first_offset, last_offset, status FROM runindex_runs "
            "WHERE finished_at IS NOT NULL AND finished_at < ? AND status != 'running' "
            "ORDER BY finished_at LIMIT ?",
            (moment, limit),
        )
        return [RunRow(r[0], int(r[1]), int(r[2]), int(r[3]), r[4]) for r in rows]

    # -- archival ------------------------------------------------------------------------------

    def to_archive(
        self, moment: float, limit: int = 1000, partitions: Collection[int] | None = None
    ) -> list[RunRow]:
        """Ended runs that finished before ``moment`` and are not archived yet, oldest first.

        A sub-workflow run whose parent still runs is left for later: its parent may still
        read it. A run archived, then retried and ended again before its records left the
        log is selected again: its archive misses the retry. ``partitions``: of these history
        partitions only.
        """
        only = ""
        if partitions is not None:
            only = f"AND r.partition_id IN ({','.join(str(int(p)) for p in partitions)}) "
        rows = self.conn.execute(
            "SELECT r.run_id, r.partition_id, r.first_offset, r.last_offset, r.status "
            "FROM runindex_runs r "
            "WHERE r.finished_at IS NOT NULL AND r.finished_at < ? AND r.status != 'running' "
            "AND NOT EXISTS (SELECT 1 FROM runindex_archive a WHERE a.run_id = r.run_id "
            "AND (a.purged_at IS NOT NULL OR a.last_offset >= r.last_offset)) "
            "AND NOT EXISTS (SELECT 1 FROM runindex_runs p "
            "WHERE p.run_id = r.parent_run_id AND p.status = 'running') "
            f"{only}ORDER BY r.finished_at LIMIT ?",
            (moment, limit),
        )
        return [RunRow(r[0], int(r[1]), int(r[2]), int(r[3]), r[4]) for r in rows]

    def mark_archived(self, archived: Sequence[Archived], at: float) -> None:
        """Record that these runs' histories, up to their last offsets, are verified where
        each says."""
        with self._transaction() as c:
            _upsert_archived(c, [(a, at) for a in archived])

    def apply_marks(self, topic: str, marks: Sequence[Mark], offsets: Mapping[int, int]) -> None:
        """Write the rows and archive records of these archive marks and the offsets of
        ``topic`` after them, in one transaction (:mod:`._archivemarks`). A row is replaced
        only by one covering a later offset, as :meth:`apply` does."""
        with self._transaction() as c:
            for mark in marks:
                run_id = mark.archived.run_id
                cur = c.execute(_UPSERT_ROW, mark.row)
                if cur.rowcount:
                    c.execute("DELETE FROM runindex_attributes WHERE run_id = ?", (run_id,))
                    c.executemany(
                        "INSERT INTO runindex_attributes VALUES (?, ?, ?, ?)",
                        [(run_id, *a) for a in mark.attributes],
                    )
            _upsert_archived(c, [(m.archived, m.archived_at) for m in marks])
            _advance(c, topic, offsets)

    def mark_source(self, run_ids: Sequence[str]) -> list[tuple[sqlite3.Row, list[Any]]]:
        """The rows of these runs (those the index has) with their search attributes as
        stored (``(name, kind, value)``): what their archive marks carry."""
        found = []
        for run_id, row in self.rows(run_ids).items():
            attributes = self.conn.execute(
                "SELECT name, kind, value FROM runindex_attributes WHERE run_id = ?", (run_id,)
            ).fetchall()
            found.append((row, [tuple(a) for a in attributes]))
        return found

    def archived(self, run_id: str) -> sqlite3.Row | None:
        """The archive row of ``run_id`` (location, records, sha256, archived_at, purged_at)."""
        found: sqlite3.Row | None = self.conn.execute(
            "SELECT * FROM runindex_archive WHERE run_id = ?", (run_id,)
        ).fetchone()
        return found

    def unpurged(self, limit: int = 1000) -> list[RunRow]:
        """Archived runs whose records are still in the log, oldest archived first.

        Only those still ended as archived: a run retried since is archived again first.
        """
        rows = self.conn.execute(
            "SELECT r.run_id, r.partition_id, r.first_offset, r.last_offset, r.status "
            "FROM runindex_archive a JOIN runindex_runs r ON r.run_id = a.run_id "
            "WHERE a.purged_at IS NULL AND r.status != 'running' "
            "AND r.last_offset = a.last_offset ORDER BY a.archived_at LIMIT ?",
            (limit,),
        )
        return [RunRow(r[0], int(r[1]), int(r[2]), int(r[3]), r[4]) for r in rows]

    def mark_purged(self, run_ids: Sequence[str], at: float) -> None:
        """Record that these archived runs' records left the log."""
        with self._transaction() as c:
            c.executemany(
                "UPDATE runindex_archive SET purged_at = ? WHERE run_id = ?",
                [(at, run_id) for run_id in run_ids],
            )

    def note_unswept(self, tasks_ends: str, at: float, tasks: Mapping[str, str]) -> int:
        """Note every archived run not noted yet as having blobs to delete, with the task
        queue's end offsets now (past every task message of those ended runs), and the runs
        of ``tasks`` with the ids of their tasks (JSON lists); how many were noted."""
        with self._transaction() as c:
            c.executemany(
                "INSERT INTO runindex_blobs (run_id, noted_at, tasks_ends, tasks) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (run_id) DO UPDATE SET "
                "tasks_ends = excluded.tasks_ends, tasks = excluded.tasks WHERE swept_at IS NULL",
                [(run_id, at, tasks_ends, ids) for run_id, ids in tasks.items()],
            )
            cur = c.execute(
                "INSERT INTO runindex_blobs (run_id, noted_at, tasks_ends) "
                "SELECT a.run_id, ?, ? FROM runindex_archive a WHERE NOT EXISTS "
                "(SELECT 1 FROM runindex_blobs b WHERE b.run_id = a.run_id)",
                (at, tasks_ends),
            )
            return int(cur.rowcount)

    def unswept(
        self,
        limit: int,
        partitions: Collection[int] | None,
        skip: Collection[str] = (),
        starts: Mapping[int, int] | None = None,
    ) -> list[Unswept]:
        """Noted runs whose blobs are not deleted yet, oldest noted first (of these history
        ``partitions`` only, when given), but those in ``skip``; with ``starts`` (each history
        partition's first offset), only the runs whose last record lies before it."""
        only = ""
        if partitions is not None:
            only = f"AND r.partition_id IN ({','.join(str(int(p)) for p in partitions)}) "
        if starts is not None:
            cases = " ".join(f"WHEN {int(p)} THEN {int(o)}" for p, o in starts.items())
            only += f"AND a.last_offset < (CASE r.partition_id {cases} ELSE -1 END) "
        rows = self.conn.execute(
            "SELECT b.run_id, r.partition_id, r.first_offset, a.last_offset, a.location, "
            "a.purged_at IS NOT NULL, b.tasks_ends, b.tasks "
            "FROM runindex_blobs b JOIN runindex_archive a ON a.run_id = b.run_id "
            "JOIN runindex_runs r ON r.run_id = b.run_id "
            f"WHERE b.swept_at IS NULL {only}ORDER BY b.noted_at LIMIT ?",
            (limit + len(skip),),
        )
        found = [
            Unswept(r[0], int(r[1]), int(r[2]), int(r[3]), str(r[4]), bool(r[5]), str(r[6]), r[7])
            for r in rows
        ]
        return [u for u in found if u.run_id not in skip][:limit]

    def mark_swept(self, run_ids: Sequence[str], at: float) -> None:
        """Record that these archived runs' blobs are deleted."""
        with self._transaction() as c:
            c.executemany(
                "UPDATE runindex_blobs SET swept_at = ? WHERE run_id = ?",
                [(at, run_id) for run_id in run_ids],
            )

    def sweep_counts(self) -> tuple[int, int]:
        """``(archived runs noted as having blobs, of which deleted)``."""
        row = self.conn.execute("SELECT COUNT(*), COUNT(swept_at) FROM runindex_blobs").fetchone()
        return int(row[0]), int(row[1])

    def archive_counts(self) -> tuple[int, int]:
        """``(archived runs, of which purged from the log)``."""
        row = self.conn.execute(
            "SELECT COUNT(*), COUNT(purged_at) FROM runindex_archive"
        ).fetchone()
        return int(row[0]), int(row[1])

    def total(self) -> int:
        """How many runs the index knows."""
        return int(self.conn.execute("SELECT COUNT(*) FROM runindex_runs").fetchone()[0])
