"""Guarantee: an acknowledged append to the embedded (SQLite) store survives SIGKILL.

A child process appends thousands of records with 8 concurrent writers (group commits) and
writes each acknowledged (value, partition, offset) to a file as soon as ``append`` returns.
It is SIGKILLed at a random moment, restarted on the same file, killed again, and so on.
Criteria, after every kill: ``PRAGMA integrity_check`` is ``ok``; every acknowledged record
is at its acknowledged position with its value; every partition's offsets are contiguous; the
log opens and reads back through deerflow.
"""

from __future__ import annotations

import asyncio
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import pytest

from deerflow.eventstore import open_log
from deerflow.eventstore.base import TopicPartition
from tests.reliability.conftest import APPS

CHILD = APPS / "append_child.py"


def spawn(url: str, tag: str, stdout: IO[bytes]) -> subprocess.Popen[bytes]:
    """Start the appending child, its acks going to ``stdout``."""
    return subprocess.Popen(
        [sys.executable, str(CHILD), url, tag], stdout=stdout, stderr=subprocess.PIPE
    )


def acknowledged(path: Path) -> list[tuple[str, int, int]]:
    """The complete ack lines of a child's output (a torn last line was not acknowledged)."""
    text = path.read_text()
    lines = text.split("\n")[:-1]  # whatever follows the last newline is incomplete
    acks = []
    for line in lines:
        value, partition, offset = line.split(" ")
        acks.append((value, int(partition), int(offset)))
    return acks


def verify(db: Path, acks: list[tuple[str, int, int]]) -> int:
    """Check the file after a kill; return how many records it holds."""
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = {
            (p, o): v
            for p, o, v in conn.execute(
                "SELECT partition_id, record_offset, value FROM records WHERE topic = 'crash'"
            )
        }
    finally:
        conn.close()
    lost = [(v, p, o) for v, p, o in acks if stored.get((p, o)) != v.encode()]
    assert not lost, f"{len(lost)} acknowledged appends lost or moved, e.g. {lost[:3]}"
    for partition in {p for p, _ in stored}:
        offsets = sorted(o for p, o in stored if p == partition)
        assert offsets == list(range(len(offsets))), f"partition {partition} has gaps"
    return len(stored)


async def readable_through_deerflow(url: str) -> int:
    log = open_log(url)
    await log.start()
    try:
        parts = await log.read_partitions({TopicPartition("crash", p): 0 for p in range(4)})
        return sum(len(records) for records in parts.values())
    finally:
        await log.stop()


async def kill_during_appends(tmp_path: Path, rng: random.Random, kills: int) -> None:
    db = tmp_path / "crash.db"
    url = f"sqlite:///{db}"
    acks: list[tuple[str, int, int]] = []
    for k in range(kills):
        out = tmp_path / f"acks-{k}.txt"
        with out.open("wb") as stdout:
            child = spawn(url, f"k{k}", stdout)
            target = rng.randint(200, 2000)  # acknowledged appends before the kill
            deadline = time.monotonic() + 60
            while out.stat().st_size < target * 12 and child.poll() is None:
                assert time.monotonic() < deadline, "the child appends too slowly"
                await asyncio.sleep(0.01)
            assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
            await asyncio.sleep(rng.uniform(0, 0.05))
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=10)
            if child.stderr:
                child.stderr.close()
        acks += acknowledged(out)
        held = verify(db, acks)
    assert await readable_through_deerflow(url) == held
    print(f"{kills} kills: {len(acks)} acknowledged appends, all present; {held} records")
    assert len(acks) >= 200 * kills


async def test_acknowledged_sqlite_appends_survive_sigkill(tmp_path, rng):
    await kill_during_appends(tmp_path, rng, kills=3)


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_full_size_twenty_kills_during_sqlite_appends(tmp_path, rng):
    await kill_during_appends(tmp_path, rng, kills=20)
