"""The synchronous SQL behind :mod:`deerflow.log.sqlite`.

Every method here runs on the log's one SQLite thread, so one connection serves them all and
the event loop never waits on the disk. Offsets are assigned inside ``BEGIN IMMEDIATE``
transactions from the file's own ``MAX(offset)``, so several processes appending to one file
still number every partition contiguously.

A compacted topic (``compacted_topics``) keeps only the newest record of each key, as a Kafka
topic with ``cleanup.policy=compact`` ends up: ``compacted_keys`` holds the offset of each
key's newest record, and the append of a key deletes the record it names in the same
transaction (one lookup and one delete by primary key, whatever the topic's size). Offsets are
never renumbered: a reader past a deleted record simply gets the next one kept. Records without
a key are kept (Kafka refuses them on a compacted topic).
"""

from __future__ import annotations

import os
import socket
import sqlite3
import struct
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from deerflow.errors import EventStoreError
from deerflow.log.base import Headers, Message, Record, TopicPartition

_SCHEMA = """
CREATE TABLE IF NOT EXISTS topics (
    name TEXT PRIMARY KEY,
    partitions INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS records (
    topic TEXT NOT NULL,
    partition_id INTEGER NOT NULL,
    record_offset INTEGER NOT NULL,
    key TEXT,
    value BLOB NOT NULL,
    headers BLOB NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    PRIMARY KEY (topic, partition_id, record_offset)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS group_offsets (
    group_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition_id INTEGER NOT NULL,
    record_offset INTEGER NOT NULL,
    PRIMARY KEY (group_id, topic, partition_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS compacted_topics (
    name TEXT PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS compacted_keys (
    topic TEXT NOT NULL,
    partition_id INTEGER NOT NULL,
    key TEXT NOT NULL,
    record_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition_id, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS group_leases (
    group_id TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    expires_at REAL NOT NULL
);
"""

_HOST = socket.gethostname()
_MAGIC = b"SQLite format 3\x00"
#: Seconds opening waits for another process's lock before saying the file is locked.
OPEN_LOCK_TIMEOUT = 10.0
_FIX = "restore it from a backup, or move it away to start a new store"


def check_store_file(path: str) -> None:
    """Refuse a store file that exists but is not a whole SQLite database.

    SQLite opens an empty file as a new database and reads a truncated one until it reaches
    the missing pages, so without this check a damaged store would look empty or fail later
    in the middle of a run. Reads the 100-byte header only.

    Raises:
        EventStoreError: naming the file and what is wrong with it.
    """
    if _recovers_from_log(path):
        return  # a crash left a write-ahead log: SQLite completes the file from it
    try:
        size = os.path.getsize(path)
        if size == 0:
            raise EventStoreError(
                f"store file {path} is empty (truncated?): {_FIX}", retriable=False
            )
        with open(path, "rb") as file:
            header = file.read(100)
    except FileNotFoundError:
        return  # a new store
    except OSError as exc:
        raise EventStoreError(f"cannot read store file {path}: {exc}", retriable=False) from exc
    if len(header) < 100 or not header.startswith(_MAGIC):
        raise EventStoreError(
            f"store file {path} is not an SQLite database: {_FIX}", retriable=False
        )
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    # The header's page count holds when its "valid for" number equals the change counter.
    if header[92:96] == header[24:28] and size < pages * page_size:
        raise EventStoreError(
            f"store file {path} is truncated ({size} of {pages * page_size} bytes): {_FIX}",
            retriable=False,
        )


def _recovers_from_log(path: str) -> bool:
    """Whether a non-empty WAL or rollback journal sits beside ``path``.

    A crash during a checkpoint can leave the file shorter than its header says (the header
    page is copied first) with the pages still in the WAL; SQLite finishes the copy on open.
    """
    for suffix in ("-wal", "-journal"):
        try:
            if os.path.getsize(path + suffix) > 0:
                return True
        except OSError:
            continue
    return False


def _opening_error(path: str, exc: sqlite3.Error) -> EventStoreError:
    text = str(exc)
    if "locked" in text or "busy" in text:
        return EventStoreError(
            f"store file {path} is locked by another process (waited {OPEN_LOCK_TIMEOUT:g}s); "
            "stop the program holding it, or use another store",
            retriable=True,
        )
    return EventStoreError(f"store file {path} cannot be opened: {text}: {_FIX}", retriable=False)


_HEADER = struct.Struct(">HI")


def encode_headers(headers: Headers) -> bytes:
    """Headers as (name length, value length, name, value) runs; compact and exact for bytes."""
    out = bytearray()
    for name, value in headers:
        raw = name.encode()
        out += _HEADER.pack(len(raw), len(value)) + raw + value
    return bytes(out)


def decode_headers(blob: bytes) -> Headers:
    """Inverse of :func:`encode_headers`."""
    headers = []
    at = 0
    while at < len(blob):
        name_len, value_len = _HEADER.unpack_from(blob, at)
        at += _HEADER.size
        name = blob[at : at + name_len].decode()
        at += name_len
        headers.append((name, bytes(blob[at : at + value_len])))
        at += value_len
    return tuple(headers)


def pid_alive(pid: int) -> bool:
    """Whether a process of this host with ``pid`` still runs (a zombie counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # not Linux, or raced with its exit: assume alive and wait for expiry
    return state not in ("Z", "X")


@dataclass
class WriteRequest:
    """One caller's share of a group-committed transaction."""

    placed: Sequence[tuple[TopicPartition, Message]]
    offsets: Mapping[TopicPartition, int] = field(default_factory=dict)
    group: str | None = None
    #: Lease holder that must still own ``group`` for the commit to apply (fencing).
    holder: str | None = None


WriteResult = list[tuple[TopicPartition, int]] | EventStoreError


class SqliteFile:
    """One connection to the log file; to be used from a single thread only."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        # End offsets known to this connection, valid while no other connection commits
        # (``PRAGMA data_version`` changes when one does): polls then cost no MAX() query.
        self._ends: dict[TopicPartition, int] = {}
        self._data_version: int | None = None
        # Compacted topics, valid under the same condition as ``_ends``.
        self._compacted: frozenset[str] | None = None

    @property
    def conn(self) -> sqlite3.Connection:
        """The connection, opened (and the schema created) on first use."""
        if self._conn is None:
            check_store_file(self.path)
            conn = sqlite3.connect(self.path, timeout=OPEN_LOCK_TIMEOUT, isolation_level=None)
            try:
                # INCREMENTAL: records deleted after archival give their pages back to the
                # file system (``reclaim``); it takes effect only when the file is created.
                conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
                conn.execute("PRAGMA journal_mode=WAL")
                # FULL: a transaction that returned is on disk, even after a power cut.
                conn.execute("PRAGMA synchronous=FULL")
                conn.executescript(_SCHEMA)
                conn.execute("SELECT COUNT(*) FROM topics").fetchone()  # reads a table's pages
                conn.execute("PRAGMA busy_timeout = 30000")  # once open, wait longer
            except sqlite3.Error as exc:
                conn.close()
                raise _opening_error(self.path, exc) from exc
            self._conn = conn
        return self._conn

    def close(self) -> None:
        """Close the connection if open."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @contextmanager
    def _transaction(self, mode: str = "") -> Iterator[sqlite3.Connection]:
        conn = self.conn
        conn.execute(f"BEGIN {mode}")
        try:
            version = conn.execute("PRAGMA data_version").fetchone()[0]
            if version != self._data_version:  # another process committed: ends moved
                self._ends.clear()
                self._compacted = None
                self._data_version = version
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            self._ends.clear()
            self._compacted = None
            raise
        conn.execute("COMMIT")

    def partition_count(self, topic: str, default: int) -> int:
        """The topic's partitions, creating it with ``default`` if missing."""
        with self._transaction("IMMEDIATE") as conn:
            conn.execute("INSERT OR IGNORE INTO topics VALUES (?, ?)", (topic, default))
            row = conn.execute("SELECT partitions FROM topics WHERE name = ?", (topic,)).fetchone()
        return int(row[0])

    def write(self, requests: Sequence[WriteRequest]) -> list[WriteResult]:
        """Apply every request in one transaction (one fsync); a fenced request fails alone."""
        results: list[WriteResult] = []
        with self._transaction("IMMEDIATE") as conn:
            next_offsets: dict[TopicPartition, int] = {}
            rows: list[tuple[object, ...]] = []
            now_ms = time.time_ns() // 1_000_000
            for request in requests:
                if request.holder is not None and not self._holds(request):
                    results.append(
                        EventStoreError(f"group {request.group!r}: lease lost to another process")
                    )
                    continue
                positions = []
                for tp, message in request.placed:
                    if tp not in next_offsets:
                        next_offsets[tp] = self._end(tp)
                    offset = next_offsets[tp]
                    next_offsets[tp] = offset + 1
                    positions.append((tp, offset))
                    rows.append((
                        tp.topic, tp.partition, offset, message.key, message.value,
                        encode_headers(message.headers) if message.headers else b"", now_ms,
                    ))  # fmt: skip
                if request.offsets:  # an append commits none: no statement to prepare
                    self._commit_offsets(request)
                results.append(positions)
            rows = self._compact(rows)
            conn.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        self._ends.update(next_offsets)  # committed: our own writes move the known ends
        return results

    def _compact(self, rows: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
        """The rows to insert, once the older records of their keys in compacted topics are
        gone: deleted from the file, or (superseded within ``rows``) never inserted."""
        compacted = self._compacted_topics()
        if not compacted:
            return rows
        newest: dict[tuple[object, object, object], int] = {}
        for at, row in enumerate(rows):
            if row[0] in compacted and row[3] is not None:
                newest[row[0], row[1], row[3]] = at
        if not newest:
            return rows
        keys = [(*key, rows[at][2]) for key, at in newest.items()]
        self.conn.executemany(
            "DELETE FROM records WHERE topic = ?1 AND partition_id = ?2 AND record_offset = ("
            "SELECT record_offset FROM compacted_keys"
            " WHERE topic = ?1 AND partition_id = ?2 AND key = ?3)",
            [key[:3] for key in keys],
        )
        self.conn.executemany(
            "INSERT INTO compacted_keys VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE"
            " SET record_offset = excluded.record_offset",
            keys,
        )
        kept = set(newest.values())
        return [
            row
            for at, row in enumerate(rows)
            if at in kept or row[0] not in compacted or row[3] is None
        ]

    def _compacted_topics(self) -> frozenset[str]:
        if self._compacted is None:
            rows = self.conn.execute("SELECT name FROM compacted_topics").fetchall()
            self._compacted = frozenset(name for (name,) in rows)
        return self._compacted

    def mark_compacted(self, topic: str) -> None:
        """Make ``topic`` keep only the newest record of each key from now on.

        A topic that held records before (a file written by an older version) is compacted
        once, here, in one pass over its records.
        """
        with self._transaction("IMMEDIATE") as conn:
            if topic in self._compacted_topics():
                return
            conn.execute("INSERT OR IGNORE INTO compacted_topics VALUES (?)", (topic,))
            conn.execute(
                "INSERT OR REPLACE INTO compacted_keys SELECT topic, partition_id, key,"
                " MAX(record_offset) FROM records WHERE topic = ? AND key IS NOT NULL"
                " GROUP BY partition_id, key",
                (topic,),
            )
            conn.execute(
                "DELETE FROM records WHERE topic = ? AND key IS NOT NULL AND record_offset < ("
                "SELECT c.record_offset FROM compacted_keys AS c WHERE c.topic = records.topic"
                " AND c.partition_id = records.partition_id AND c.key = records.key)",
                (topic,),
            )
            self._compacted = None

    def _holds(self, request: WriteRequest) -> bool:
        row = self.conn.execute(
            "SELECT holder FROM group_leases WHERE group_id = ?", (request.group,)
        ).fetchone()
        return row is not None and row[0] == request.holder

    def _commit_offsets(self, request: WriteRequest) -> None:
        self.conn.executemany(
            "INSERT INTO group_offsets VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE"
            " SET record_offset = excluded.record_offset",
            [(request.group, tp.topic, tp.partition, off) for tp, off in request.offsets.items()],
        )

    def _end(self, tp: TopicPartition) -> int:
        known = self._ends.get(tp)
        if known is not None:
            return known
        row = self.conn.execute(
            "SELECT MAX(record_offset) FROM records WHERE topic = ? AND partition_id = ?",
            (tp.topic, tp.partition),
        ).fetchone()
        end = self._ends[tp] = 0 if row[0] is None else int(row[0]) + 1
        return end

    def end_offset(self, tp: TopicPartition) -> int:
        """The offset the next record of ``tp`` will get."""
        with self._transaction():
            return self._end(tp)

    def fetch(
        self, positions: Sequence[tuple[TopicPartition, int]], max_records: int
    ) -> tuple[list[Record], dict[TopicPartition, int]]:
        """Records from each position and every end offset, from one read snapshot."""
        out: list[Record] = []
        ends: dict[TopicPartition, int] = {}
        with self._transaction() as conn:
            for tp, offset in positions:
                ends[tp] = end = self._end(tp)
                budget = max_records - len(out)
                if budget <= 0 or end <= offset:
                    continue
                rows = conn.execute(
                    "SELECT record_offset, key, value, headers, timestamp_ms FROM records"
                    " WHERE topic = ? AND partition_id = ? AND record_offset >= ?"
                    " ORDER BY record_offset LIMIT ?",
                    (tp.topic, tp.partition, offset, budget),
                )
                out.extend(
                    Record(
                        tp.topic, tp.partition, off, key, value,
                        decode_headers(hdrs) if hdrs else (), ts,
                    )
                    for off, key, value, hdrs, ts in rows
                )  # fmt: skip
        return out, ends

    def load_committed(self, group: str, tp: TopicPartition) -> int | None:
        """The group's committed offset for ``tp``."""
        row = self.conn.execute(
            "SELECT record_offset FROM group_offsets"
            " WHERE group_id = ? AND topic = ? AND partition_id = ?",
            (group, tp.topic, tp.partition),
        ).fetchone()
        return None if row is None else int(row[0])

    def try_lease(self, group: str, holder: str, ttl: float) -> bool:
        """Take or renew the group's lease; True if ``holder`` has it now.

        A lease is free when absent, expired, or held by a dead process of this host (so a
        worker restarted after ``kill -9`` need not wait for the expiry).
        """
        with self._transaction("IMMEDIATE") as conn:
            row = conn.execute(
                "SELECT holder, host, pid, expires_at FROM group_leases WHERE group_id = ?",
                (group,),
            ).fetchone()
            now = time.time()
            taken = row is not None and row[0] != holder and row[3] > now
            if taken and (row[1] != _HOST or pid_alive(row[2])):
                return False
            conn.execute(
                "INSERT OR REPLACE INTO group_leases VALUES (?, ?, ?, ?, ?)",
                (group, holder, _HOST, os.getpid(), now + ttl),
            )
        return True

    def lease_held(self, group: str) -> bool:
        """Whether a live process holds ``group``'s lease now."""
        row = self.conn.execute(
            "SELECT host, pid, expires_at FROM group_leases WHERE group_id = ?", (group,)
        ).fetchone()
        return row is not None and row[2] > time.time() and (row[0] != _HOST or pid_alive(row[1]))

    def release_lease(self, group: str, holder: str) -> None:
        """Give the lease up so another process can take it at once."""
        with self._transaction("IMMEDIATE") as conn:
            conn.execute(
                "DELETE FROM group_leases WHERE group_id = ? AND holder = ?", (group, holder)
            )

    def delete_keyed(self, ranges: Sequence[tuple[TopicPartition, str, int, int]]) -> int:
        """Delete, for each ``(tp, key, first, last)``, the records of ``tp`` with ``key``
        between offsets ``first`` and ``last``, in one transaction.

        A partition's last record always stays, whoever's it is: the next offset is one past
        the largest one kept, and offsets never go back. Returns how many were deleted.
        """
        deleted = 0
        with self._transaction("IMMEDIATE") as conn:
            for tp, key, first, last in ranges:
                cur = conn.execute(
                    "DELETE FROM records WHERE topic = ? AND partition_id = ? AND key = ? "
                    "AND record_offset BETWEEN ? AND ? AND record_offset < ("
                    "SELECT MAX(record_offset) FROM records WHERE topic = ? AND partition_id = ?)",
                    (tp.topic, tp.partition, key, first, last, tp.topic, tp.partition),
                )
                deleted += int(cur.rowcount)
        return deleted

    def count_keyed(self, ranges: Sequence[tuple[TopicPartition, str, int, int]]) -> int:
        """How many records of ``tp`` with ``key`` between ``first`` and ``last`` there are,
        over every ``(tp, key, first, last)`` of ``ranges``."""
        conn = self.conn
        return sum(
            int(
                conn.execute(
                    "SELECT COUNT(*) FROM records WHERE topic = ? AND partition_id = ? "
                    "AND key = ? AND record_offset BETWEEN ? AND ?",
                    (tp.topic, tp.partition, key, first, last),
                ).fetchone()[0]
            )
            for tp, key, first, last in ranges
        )

    def reclaim(self, pages: int) -> int:
        """Give up to ``pages`` free pages back to the file system; how many were freed.

        Only a file created with incremental auto-vacuum can (0 for an older file: its free
        pages are reused by later writes, the file does not shrink).
        """
        conn = self.conn
        if int(conn.execute("PRAGMA auto_vacuum").fetchone()[0]) != 2:
            return 0
        before = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
        # executescript steps the pragma to its end: execute() would free one page only
        conn.executescript(f"PRAGMA incremental_vacuum({max(0, int(pages))});")
        after = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
        # the truncation reaches the file at a checkpoint; a busy one is retried next time
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        return before - after
