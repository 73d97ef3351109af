"""Retention and archival: ended runs leave the SQLite store for an archive and read back."""

from __future__ import annotations

import asyncio
import gzip
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import orjson
import pytest

from deerflow import Engine
from deerflow.core import history as h
from deerflow.runtime._archiver import Archiver
from deerflow.runtime._archivestore import ArchiveError, open_archive, parse_retention
from tests.engine.test_runindex import orders

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DEERFLOW_PREFIX", f"t{uuid.uuid4().hex[:10]}")
    for var in ("DEERFLOW_ARCHIVE", "DEERFLOW_RETENTION", "DEERFLOW_INDEX"):
        monkeypatch.delenv(var, raising=False)
    return f"sqlite:///{tmp_path / 'events.db'}"


async def _run(store: str, amounts: list[int], bad: int = 0) -> list[str]:
    async with Engine(store, [orders()]) as engine:
        handles = [
            await engine.start("orders", input={"customer": "c", "amount": a}) for a in amounts
        ]
        handles += [await engine.start("orders", input={"bad": True}) for _ in range(bad)]
        for handle in handles:
            await handle.result(timeout=60)
        return [hd.run_id for hd in handles]


def _records_of(store: str, run_id: str) -> int:
    with sqlite3.connect(store.removeprefix("sqlite:///")) as conn:
        return int(
            conn.execute("SELECT COUNT(*) FROM records WHERE key = ?", (run_id,)).fetchone()[0]
        )


def _archived_files(directory: Path) -> list[Path]:
    return sorted((directory / "runs").glob("*.jsonl.gz"))


async def test_ended_runs_are_archived_purged_and_still_read_back(store, tmp_path):
    ids = await _run(store, [1, 2, 3], bad=1)
    before = {rid: _records_of(store, rid) for rid in ids}
    archive = tmp_path / "archive"
    async with Engine(store, [orders()], archive=f"file://{archive}", retention="0s") as engine:
        assert engine.archiver is not None
        archived, purged = await engine.archiver.archive_once()
        assert (archived, purged) == (4, 4)
        assert await engine.archiver.archive_once() == (0, 0)  # nothing twice
        files = _archived_files(archive)
        assert len(files) == 4
        lines = gzip.decompress(files[0].read_bytes()).splitlines()
        head = orjson.loads(lines[0])
        assert head["format"] == 1 and head["records"] == len(lines) - 1
        assert orjson.loads(lines[1])["event"]["type"] == "RunRequested"
        assert await engine.index.archived(ids[0]) == f"file://{archive}/runs/{ids[0]}.jsonl.gz"
        assert await engine.index.archive_counts() == (4, 4)
    # their records left the store (a partition's very last record stays: offsets never go back)
    assert sum(_records_of(store, rid) for rid in ids) <= 4 < sum(before.values())
    with sqlite3.connect(store.removeprefix("sqlite:///")) as conn:
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
        assert conn.execute("PRAGMA freelist_count").fetchone()[0] == 0  # pages given back
    # a fresh process (no archive configured) reads an archived run back from where it lies
    async with Engine(store, orchestrate=False, work=False) as engine:
        old = await engine.get_run(ids[0])
        assert old.status == "completed" and old.output == {"total": 2}
        assert old.tasks["price"].output == 2
        failed = await engine.get_run(ids[3])
        assert failed.status == "failed" and failed.failed_task == "price"
        assert len(await engine.index.records(ids[1])) == before[ids[1]]
        assert [r.run_id for r in await engine.list_runs()] == list(reversed(ids))
        # new runs go on after the purge, with offsets past every one deleted
    more = await _run(store, [7])
    async with Engine(store, orchestrate=False, work=False) as engine:
        assert (await engine.get_run(more[0])).output == {"total": 14}
        assert (await engine.get_run(ids[2])).output == {"total": 6}


async def test_runs_younger_than_the_retention_and_running_ones_stay(store, tmp_path):
    ids = await _run(store, [1])
    async with Engine(store, [orders()], archive=str(tmp_path / "a"), retention="1h") as engine:
        assert engine.archiver is not None
        assert await engine.archiver.archive_once() == (0, 0)
        assert await engine.index.archived(ids[0]) is None
        # an archiver takes the runs of the partitions its orchestrator owns (here: all)
        assert engine.orchestrator is not None
        owned = engine.orchestrator.owned_partitions()
        assert [r.run_id for r in await engine.index.to_archive(10**10, 10, owned)] == ids
        assert await engine.index.to_archive(10**10, 10, []) == []
        assert await engine.archiver.archive_once(now=10**10) == (1, 1)  # once old enough
    assert _archived_files(tmp_path / "a")[0].name == f"{ids[0]}.jsonl.gz"


def test_bad_archive_settings_are_clear_errors():
    with pytest.raises(ArchiveError, match="retention 'soon' is not a duration"):
        parse_retention("soon")
    assert parse_retention("30d") == 30 * 86400 and parse_retention("90m") == 5400
    with pytest.raises(ArchiveError, match="use file:///directory or s3://bucket/prefix"):
        open_archive("ftp://host/x")
    with pytest.raises(ArchiveError, match="names no bucket"):
        open_archive("s3:///prefix")
    with pytest.raises(ArchiveError, match="unknown option 'color'"):
        open_archive("s3://b/p?color=red")


async def test_an_s3_archive_is_written_verified_and_read_back(store, moto_endpoint, monkeypatch):
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    bucket = f"archive-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket=bucket)
    ids = await _run(store, [4, 5])
    url = f"s3://{bucket}/deerflow/history?endpoint_url={moto_endpoint}"
    async with Engine(store, [orders()], archive=url, retention="0s") as engine:
        assert engine.archiver is not None
        assert await engine.archiver.archive_once() == (2, 2)
        keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"])
        assert keys == sorted(f"deerflow/history/runs/{rid}.jsonl.gz" for rid in ids)
        assert (await engine.get_run(ids[1])).output == {"total": 10}
    # a process that knows the archive reads the run back from S3 too
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    async with Engine(store, orchestrate=False, work=False) as engine:
        run = await engine.get_run(ids[0])
        assert run.tasks["price"].output == 8 and run.output == {"total": 8}


_KILLED = """
import asyncio, os, signal, sys
from deerflow import Engine
from deerflow.runtime._archivestore import FileArchive
from tests.engine.test_runindex import orders

class Dying(FileArchive):
    written = 0
    def put(self, run_id, data):
        location = super().put(run_id, data)
        Dying.written += 1
        if sys.argv[3].isdigit() and Dying.written == int(sys.argv[3]):
            os.kill(os.getpid(), signal.SIGKILL)  # written, not yet recorded in the index
        return location

async def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)  # recorded as archived, not yet deleted

if sys.argv[3] == "purge":
    from deerflow.log.sqlite import SqliteEventLog
    SqliteEventLog.delete_keyed = die

async def main():
    async with Engine(sys.argv[1], [orders()], archive=Dying(sys.argv[2]), retention=0) as eng:
        await eng.archiver.archive_once()

asyncio.run(main())
"""


async def test_a_sigkill_mid_archival_loses_nothing_and_a_rerun_duplicates_nothing(store, tmp_path):
    ids = await _run(store, [1, 2, 3, 4, 5], bad=1)
    archive = tmp_path / "archive"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", textwrap.dedent(_KILLED), store, str(archive), "3"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-2000:]
    assert 3 <= len(_archived_files(archive)) <= len(ids)  # written (some in flight too)
    assert all(_records_of(store, rid) > 0 for rid in ids)  # nothing purged
    async with Engine(store, [orders()], archive=f"file://{archive}", retention=0) as engine:
        assert engine.archiver is not None
        assert await engine.index.archive_counts() == (0, 0)  # none recorded
        # what was written but not recorded is written again, under the same names
        assert await engine.archiver.archive_once() == (6, 6)
        assert await engine.archiver.archive_once() == (0, 0)
        assert sorted(p.name for p in _archived_files(archive)) == sorted(
            f"{rid}.jsonl.gz" for rid in ids
        )
        for rid, amount in zip(ids, [1, 2, 3, 4, 5], strict=False):
            assert (await engine.get_run(rid)).output == {"total": 2 * amount}
        assert (await engine.get_run(ids[5])).status == "failed"


async def test_a_sigkill_between_recording_and_purging_is_finished_by_the_next_pass(
    store, tmp_path
):
    ids = await _run(store, [1, 2], bad=1)
    archive = tmp_path / "archive"
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", textwrap.dedent(_KILLED), store, str(archive), "purge"],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-2000:]
    assert len(_archived_files(archive)) == 3
    assert all(_records_of(store, rid) > 0 for rid in ids)
    async with Engine(store, [orders()], archive=f"file://{archive}", retention=0) as engine:
        assert engine.archiver is not None
        assert await engine.index.archive_counts() == (3, 0)
        assert await engine.archiver.archive_once() == (0, 3)  # purged, not written again
        assert (await engine.get_run(ids[1])).output == {"total": 4}
    assert sum(_records_of(store, rid) for rid in ids) <= 4


async def test_a_run_retried_after_archival_is_archived_again_before_it_is_purged(store, tmp_path):
    (failed,) = await _run(store, [], bad=1)
    async with Engine(store, [orders()]) as engine:
        archiver = Archiver(engine.index, engine.log, open_archive(str(tmp_path / "a")), 0.0)
        archiver.purge = False  # archived, not yet purged
        assert await archiver.archive_once() == (1, 0)
        first = len(await engine.index.records(failed))
        # a retry appended straight to the history (the CLI and API refuse it)
        await engine.append_history(
            [h.RunRetryRequested(id=h.event_id(failed, "retry", 1), run_id=failed, retry=1)]
        )
        state = await engine.index.wait(failed, lambda s: s.retries == 1 and s.terminal, 30)
        assert state is not None and state.status == "failed"
        assert await engine.index.unpurged() == []  # its archive misses the retry
        archiver.purge = True
        assert await archiver.archive_once() == (1, 1)  # written again, then purged
        records = await engine.index.records(failed)
        assert len(records) > first
        assert [r.offset for r in records] == sorted(r.offset for r in records)


async def test_records_gone_by_retention_are_read_from_the_archive(store, tmp_path):
    """As on Kafka, where the topic's retention removes records the archiver did not delete."""
    ids = await _run(store, [5, 6])
    async with Engine(store, [orders()]) as engine:
        archiver = Archiver(engine.index, engine.log, open_archive(str(tmp_path / "a")), 0.0)
        archiver.purge = False
        assert await archiver.archive_once() == (2, 0)
    with sqlite3.connect(store.removeprefix("sqlite:///")) as conn:
        conn.execute("DELETE FROM records WHERE key = ?", (ids[0],))  # expired
    async with Engine(store, orchestrate=False, work=False) as engine:
        run = await engine.get_run(ids[0])
        assert run.status == "completed" and run.tasks["price"].output == 10


@pytest.mark.kafka
async def test_runs_on_kafka_are_archived_and_left_to_the_topic_retention(
    kafka_url, tmp_path, monkeypatch
):
    monkeypatch.setenv("DEERFLOW_PREFIX", f"t{uuid.uuid4().hex[:10]}")
    monkeypatch.setenv("DEERFLOW_INDEX", str(tmp_path / "index.db"))
    ids = await _run(kafka_url, [2, 3])
    archive = tmp_path / "archive"
    async with Engine(kafka_url, [orders()], archive=str(archive), retention=0) as engine:
        assert engine.archiver is not None and not engine.archiver.purge
        archived, purged = await engine.archiver.archive_once()
        assert (archived, purged) == (2, 0)  # nothing deleted: the topic's retention does that
        assert len(_archived_files(archive)) == 2
        assert (await engine.get_run(ids[1])).output == {"total": 6}
