"""Blobs of archived runs are deleted once no record can refer to them; live runs keep theirs."""

from __future__ import annotations

import asyncio
import base64
import gzip
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from deerflow import Engine, Workflow
from deerflow.payloads import BlobStore, LocalBlobStore, blob_prefix
from tests.payloads.stores import keys_of, s3_store

ROOT = Path(__file__).resolve().parents[2]
BIG = 300 * 1024  # above the 256 kB threshold: every copy of it goes by reference


def reports() -> Workflow:
    """A large output, read by the next task (its task message holds it) and returned."""
    wf = Workflow(name="reports")

    @wf.task(id="render")
    def render(context: Any) -> dict[str, Any]:
        return {"pdf": "x" * BIG, "n": context.params["n"]}

    @wf.task(id="measure", depends_on=["render"])
    def measure(context: Any) -> dict[str, Any]:
        rendered = context.tasks["render"].output
        return {"chars": len(rendered["pdf"]), "n": rendered["n"], "pdf": rendered["pdf"]}

    return wf


def small() -> Workflow:
    """A run without blobs."""
    wf = Workflow(name="small")

    @wf.task(id="one")
    def one(context: Any) -> int:
        return 1

    return wf


def waiting(gate: asyncio.Event) -> Workflow:
    """A run that stays running, with a large input, until ``gate`` opens."""
    wf = Workflow(name="waiting")

    @wf.task(id="hold")
    async def hold(context: Any) -> int:
        await gate.wait()
        return len(context.input["text"])

    return wf


def of_run(engine: Engine, keys: list[str], run_id: str) -> list[str]:
    """The keys of ``run_id``'s blobs: its history's and its task messages'."""
    mine = (blob_prefix(engine.topics.history, run_id), blob_prefix(engine.topics.tasks, run_id))
    task_dir = mine[1].rstrip("/") + "_2f"  # "<run>/<task>" escaped
    return [k for k in keys if k.startswith(mine[0]) or k.startswith(task_dir)]


@pytest.fixture
def sqlite_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DEERFLOW_PREFIX", f"t{uuid.uuid4().hex[:10]}")
    for var in ("DEERFLOW_ARCHIVE", "DEERFLOW_RETENTION", "DEERFLOW_INDEX", "DEERFLOW_BLOBS"):
        monkeypatch.delenv(var, raising=False)
    return f"sqlite:///{tmp_path / 'events.db'}"


@pytest.fixture(params=["directory", pytest.param("s3", marks=pytest.mark.s3)])
def blob_store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    """A directory, or a bucket of moto_server."""
    if request.param == "directory":
        return LocalBlobStore(tmp_path / "blobs")
    return s3_store(request)


async def _finished(engine: Engine, count: int) -> list[str]:
    handles = [await engine.start("reports", params={"n": n}) for n in range(count)]
    for handle in handles:
        result = await handle.result(timeout=120)
        assert result.status == "completed", result.error
    return [h.run_id for h in handles]


def _archive_lines(archive: Path, run_id: str) -> list[dict[str, Any]]:
    data = gzip.decompress((archive / "runs" / f"{run_id}.jsonl.gz").read_bytes())
    return [orjson.loads(line) for line in data.splitlines()[1:]]


def _task_messages(store: str, run_id: str) -> int:
    with sqlite3.connect(store.removeprefix("sqlite:///")) as conn:
        return int(
            conn.execute(
                "SELECT COUNT(*) FROM records WHERE topic LIKE '%.tasks' AND key LIKE ?",
                (f"{run_id}/%",),
            ).fetchone()[0]
        )


async def test_archived_runs_lose_their_blobs_live_ones_keep_theirs_and_outputs_read_back(
    sqlite_store: str, blob_store: BlobStore, tmp_path: Path
) -> None:
    archive = tmp_path / "archive"
    gate = asyncio.Event()
    wfs = [reports(), waiting(gate)]
    async with Engine(sqlite_store, wfs, blobs=blob_store, partitions=1) as engine:
        done = await _finished(engine, 2)
        live = await engine.start("waiting", input={"text": "t" * BIG})
        await engine.index.wait(live.run_id, lambda s: "hold" in s.tasks, 30)
        before = await keys_of(blob_store)
        for run_id in done:  # the outcome, the task message, the run's end
            assert len(of_run(engine, before, run_id)) >= 3, before
        assert of_run(engine, before, live.run_id)
    async with Engine(
        sqlite_store, wfs, blobs=blob_store, archive=str(archive), retention=0, partitions=1
    ) as engine:
        assert engine.archiver is not None
        assert await engine.archiver.archive_once() == (2, 2)  # the live run stays
        assert await engine.archiver.sweep_once() == 2
        assert await engine.archiver.sweep_once() == 0  # nothing twice
        after = await keys_of(blob_store)
        assert all(of_run(engine, after, run_id) == [] for run_id in done), after
        # (the restarted engine may have dispatched its task again: one more task message)
        assert set(of_run(engine, before, live.run_id)) <= set(of_run(engine, after, live.run_id))
        assert all(_task_messages(sqlite_store, run_id) == 0 for run_id in done)
        # the archive holds the values, not references to the blobs just deleted
        lines = _archive_lines(archive, done[1])
        assert not any(
            base64.b64decode(value) == b"claim-check"
            for line in lines
            for _, value in line["headers"]
        )
        ended = [line["event"] for line in lines if line["event"]["type"] == "RunCompleted"]
        assert ended[0]["output"]["chars"] == BIG
        run = await engine.get_run(done[1])
        assert run.status == "completed" and run.output["n"] == 1
        assert run.tasks["render"].output["pdf"] == "x" * BIG
        gate.set()
        result = await engine.wait(live.run_id, timeout=60)  # its input read from its blob
        assert result.status == "completed" and result.output == BIG


_KILLED = """
import asyncio, os, signal, sys
import deerflow.runtime._archiver as archiver
from deerflow import Engine
from deerflow.payloads import LocalBlobStore
from tests.payloads.test_cleanup import reports, small

archiver.WRITERS = 1  # one run at a time: the kill cuts the first run's deletion short

class Dying(LocalBlobStore):
    async def delete_prefix(self, prefix):
        removed = await super().delete_prefix(prefix)
        os.kill(os.getpid(), signal.SIGKILL)  # one directory deleted, the run not marked swept
        return removed

async def main():
    blobs = Dying(sys.argv[2])
    wfs = [reports(), small()]
    async with Engine(sys.argv[1], wfs, blobs=blobs, archive=sys.argv[3], retention=0) as e:
        await e.archiver.archive_once()
        await e.archiver.sweep_once()

asyncio.run(main())
"""


async def test_a_run_holding_a_partitions_last_record_is_swept_once_another_follows(
    sqlite_store: str, tmp_path: Path
) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs")
    wfs = [reports(), small()]
    async with Engine(
        sqlite_store, wfs, blobs=blobs, archive=str(tmp_path / "a"), retention=0, partitions=1
    ) as engine:
        assert engine.archiver is not None
        [last] = await _finished(engine, 1)
        assert await engine.archiver.archive_once() == (1, 1)
        assert await engine.archiver.sweep_once() == 0  # its last records may still be read
        assert of_run(engine, await keys_of(blobs), last)
        assert (await (await engine.start("small")).result(timeout=60)).output == 1
        assert await engine.archiver.sweep_once() == 1
        assert of_run(engine, await keys_of(blobs), last) == []
        assert (await engine.get_run(last)).output["chars"] == BIG


async def test_a_sigkill_mid_sweep_loses_nothing_and_the_next_pass_leaves_no_blob(
    sqlite_store: str, tmp_path: Path
) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs")
    archive = tmp_path / "archive"
    async with Engine(sqlite_store, [reports(), small()], blobs=blobs, partitions=1) as engine:
        ids = await _finished(engine, 3)
        # the last record of each partition stays (offsets never go back): a run without blobs
        assert (await (await engine.start("small")).result(timeout=60)).output == 1
        before = await keys_of(blobs)
    killed = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-c",
            textwrap.dedent(_KILLED),
            sqlite_store,
            str(blobs.directory),
            str(archive),
        ],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        capture_output=True,
        timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    cut = await keys_of(blobs)
    assert 0 < len(cut) < len(before), (before, cut)  # some blobs went, not all
    async with Engine(
        sqlite_store, [reports(), small()], blobs=blobs, archive=str(archive), retention=0
    ) as engine:
        assert engine.archiver is not None
        assert await engine.index.archive_counts() == (4, 4)  # archived and purged before
        assert await engine.archiver.archive_once() == (0, 0)
        assert await engine.archiver.sweep_once() == 3  # the small run's last records stay
        assert await engine.index.sweep_counts() == (4, 3)
        assert await keys_of(blobs) == []
        for n, run_id in enumerate(ids):
            run = await engine.get_run(run_id)
            assert run.output["n"] == n and run.output["chars"] == BIG
    # a fresh process reads an archived run, large output and all, from its archive
    shown = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "deerflow",
            "runs",
            "show",
            ids[2],
            "--json",
            "--store",
            sqlite_store,
        ],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        capture_output=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr.decode()[-2000:]
    result = orjson.loads(shown.stdout)["result"]
    assert result["status"] == "completed" and result["run_id"] == ids[2]
    assert result["output"]["chars"] == BIG and result["output"]["pdf"] == "x" * BIG


@pytest.mark.kafka
async def test_on_kafka_blobs_stay_while_the_records_do_and_go_once_they_left(
    kafka_url: str, kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
    from aiokafka.structs import TopicPartition as KafkaTopicPartition

    from deerflow.log.base import TopicPartition
    from deerflow.log.kafka import KafkaEventLog
    from deerflow.payloads import stored_in
    from tests.services import real_kafka_only

    monkeypatch.setenv("DEERFLOW_PREFIX", f"t{uuid.uuid4().hex[:10]}")
    monkeypatch.setenv("DEERFLOW_INDEX", str(tmp_path / "index.db"))
    blobs = LocalBlobStore(tmp_path / "blobs")
    archive = tmp_path / "archive"
    async with Engine(kafka_url, [reports()], blobs=blobs, archive=str(archive), retention=0) as e:
        assert e.archiver is not None
        ids = await _finished(e, 2)
        assert await e.archiver.archive_once() == (2, 0)  # Kafka's retention deletes records
        # the records still refer to the blobs (history.retention.ms=-1): nothing goes
        assert await e.archiver.sweep_once() == 0
        kept = await keys_of(blobs)
        assert all(of_run(e, kept, run_id) for run_id in ids)
        assert (await e.get_run(ids[1])).output["chars"] == BIG
        real_kafka_only("has no delete_records (what retention does to expired records)")
        backend = stored_in(e.log)
        assert isinstance(backend, KafkaEventLog)
        ends: dict[Any, int] = {}
        for topic in (e.topics.history, e.topics.tasks):
            count = await backend.partition_count(topic)
            found = await backend.true_ends([TopicPartition(topic, p) for p in range(count)])
            ends.update(
                {KafkaTopicPartition(tp.topic, tp.partition): end for tp, end in found.items()}
            )
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            await admin.delete_records(
                {tp: RecordsToDelete(end) for tp, end in ends.items()}, timeout_ms=10_000
            )
        finally:
            await admin.close()
        assert await e.archiver.sweep_once() == 2
        assert await keys_of(blobs) == []
        assert (await e.get_run(ids[0])).output["chars"] == BIG  # from the archive


async def test_snapshots_go_to_the_log_itself_so_no_blob_outlives_them(
    sqlite_store: str, tmp_path: Path
) -> None:
    """A snapshot's chunks fit a record each: by reference, every snapshot would leave blobs
    that no archived run owns, named by records the compacted topic drops."""
    from deerflow.payloads import reference
    from tests.payloads.kept import kept_records

    blobs = LocalBlobStore(tmp_path / "blobs")
    gate = asyncio.Event()
    wfs = [waiting(gate)]
    async with Engine(sqlite_store, wfs, blobs=blobs, snapshot_every=1, partitions=1) as engine:
        live = await engine.start("waiting", input={"text": "s" * BIG})
        await engine.index.wait(live.run_id, lambda s: "hold" in s.tasks, 30)
        snapshots = engine.topics.snapshots
    # the stop wrote the partition's snapshot: the live run's 300 kB input, in chunks
    async with Engine(sqlite_store, wfs, blobs=blobs, snapshot_every=1, partitions=1) as engine:
        chunks = await kept_records(engine, snapshots)
        assert sum(len(c.value) for c in chunks) > BIG
        assert all(reference(c) is None for c in chunks)
        assert not any(key.startswith(f"{snapshots}/") for key in await keys_of(blobs))
        gate.set()
        assert (await engine.wait(live.run_id, timeout=60)).output == BIG


async def test_a_run_whose_archive_cannot_be_read_keeps_its_blobs_and_the_others_go(
    sqlite_store: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs")
    archive = tmp_path / "archive"
    wfs = [reports(), small()]
    async with Engine(
        sqlite_store, wfs, blobs=blobs, archive=str(archive), retention=0, partitions=1
    ) as engine:
        assert engine.archiver is not None
        lost, kept = await _finished(engine, 2)
        assert (await (await engine.start("small")).result(timeout=60)).output == 1
        # archived as by an older version, which did not note the runs' tasks
        engine.archiver.blobs, store = None, engine.archiver.blobs
        assert await engine.archiver.archive_once() == (3, 3)
        engine.archiver.blobs = store
        (archive / "runs" / f"{lost}.jsonl.gz").unlink()  # its task ids are unknown now
        assert await engine.archiver.sweep_once() == 1
        left = await keys_of(blobs)
        assert of_run(engine, left, lost) and of_run(engine, left, kept) == []
    assert f"run {lost}: its blobs are kept: archive" in caplog.text
