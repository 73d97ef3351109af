"""An idempotent sink for tests: effects keyed by idempotency key, plus every attempt."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path


class Sink:
    """``effects`` holds one row per idempotency key; ``attempts`` one row per execution."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS effects (key TEXT PRIMARY KEY, value TEXT)")
            db.execute(
                "CREATE TABLE IF NOT EXISTS attempts (key TEXT, attempt INTEGER, pid INTEGER)"
            )

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        for _ in range(100):
            try:
                # Switching to WAL takes an exclusive lock and skips the busy timeout: worker
                # processes opening the sink at once see "database is locked"; try again.
                db.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError:
                time.sleep(0.05)
        return db

    def record(self, key: str, attempt: int, value: str = "") -> None:
        with self._connect() as db:
            db.execute("INSERT INTO attempts VALUES (?, ?, ?)", (key, attempt, os.getpid()))
            db.execute("INSERT OR IGNORE INTO effects VALUES (?, ?)", (key, value))

    def effects(self) -> int:
        with self._connect() as db:
            return int(db.execute("SELECT COUNT(*) FROM effects").fetchone()[0])

    def executions(self, key_like: str = "%") -> int:
        with self._connect() as db:
            return int(
                db.execute(
                    "SELECT COUNT(*) FROM attempts WHERE key LIKE ?", (key_like,)
                ).fetchone()[0]
            )

    def pids(self) -> set[int]:
        with self._connect() as db:
            return {int(row[0]) for row in db.execute("SELECT DISTINCT pid FROM attempts")}
