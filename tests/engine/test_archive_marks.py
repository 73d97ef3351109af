"""Archive marks: a run archived by one process is known as archived, and listed, by every
process whose run index is a file of its own, including one built after the run's history
records left the log."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import pytest

from deerflow import Engine
from deerflow.core.topics import Topics
from deerflow.log import open_log
from deerflow.log.base import Message, TopicPartition
from deerflow.runtime._runindex import _identity
from deerflow.runtime._visibility import VisibilityStore
from tests.engine.test_archive import _run
from tests.engine.test_runindex import orders
from tests.web.test_archive_views import _cli


@pytest.fixture
def prefix(monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"t{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("DEERFLOW_PREFIX", name)
    for var in ("DEERFLOW_ARCHIVE", "DEERFLOW_RETENTION", "DEERFLOW_INDEX"):
        monkeypatch.delenv(var, raising=False)
    return name


async def _archive(store: str, index: Path, archive: Path) -> None:
    async with Engine(store, [orders()], archive=str(archive), index=str(index), retention=0) as e:
        assert e.archiver is not None
        archived, _ = await e.archiver.archive_once()
        assert archived == 2


async def _skipping_index(store: str, path: Path) -> None:
    """An index file that applied the history up to its end without a row: as one built
    after retention removed every record so far (a broker without ``delete_records``)."""
    topics = Topics.from_env(None)
    log = open_log(store)
    await log.start()
    try:
        count = await log.partition_count(topics.history)
        tps = [TopicPartition(topics.history, p) for p in range(count)]
        async with log.reader({tp: 0 for tp in tps}) as reader:
            while await reader.poll(timeout=0.5, max_records=1000) or any(
                reader.lag(tp) for tp in tps
            ):
                pass
            ends = {tp.partition: reader.position(tp) for tp in tps}
    finally:
        await log.stop()
    visibility = VisibilityStore(str(path), f"{_identity(store)} {topics.history}", own_file=True)
    visibility.open()
    visibility.apply(topics.history, [], ends)
    visibility.close()


@pytest.mark.kafka
async def test_a_run_archived_on_kafka_is_archived_for_every_process(
    kafka_url, tmp_path, prefix, monkeypatch
):
    ids = await _run(kafka_url, [4, 30])
    archive = tmp_path / "archive"
    await _archive(kafka_url, tmp_path / "a.db", archive)
    location = f"file://{archive}/runs/{ids[0]}.jsonl.gz"

    # Another process, its own index built from the history, without any archive setting.
    async with Engine(kafka_url, orchestrate=False, work=False, index=str(tmp_path / "b.db")) as b:
        assert await b.get_run(ids[0])  # reads the whole index first
        assert await b.index.archived(ids[0]) == location
        assert await b.index.archived(ids[1]) is not None

    # A fresh index whose history records are gone: the marks alone bring the runs back.
    fresh = tmp_path / "c.db"
    await _skipping_index(kafka_url, fresh)
    async with Engine(kafka_url, orchestrate=False, work=False, index=str(fresh)) as c:
        run = await c.get_run(ids[1])
        assert run.status == "completed" and run.output == {"total": 60}
        assert run.tasks["price"].output == 60
        listed = await c.list_runs(workflow="orders", attributes={"customer": "c", "rush": True})
        assert [r.run_id for r in listed] == [ids[1]]
        assert await c.count_runs(workflow="orders") == {"completed": 2}
        assert await c.index.archived(ids[0]) == location

    monkeypatch.setenv("DEERFLOW_INDEX", str(fresh))
    code, out, err = await _cli(kafka_url, "runs", "show", ids[0])
    assert code == 0, err
    assert f"archived: {location}" in out and "completed" in out


async def test_a_fresh_index_after_the_records_left_reads_the_run_from_its_archive(
    tmp_path, prefix
):
    """On SQLite with an index file per process, the records really deleted (as retention
    deletes them on Kafka)."""
    store = f"sqlite:///{tmp_path / 'events.db'}"
    ids = await _run(store, [7, 12])
    archive = tmp_path / "archive"
    await _archive(store, tmp_path / "a.db", archive)
    with sqlite3.connect(store.removeprefix("sqlite:///")) as conn:
        history = f"{prefix}.history"
        conn.execute("DELETE FROM records WHERE topic = ? AND key IN (?, ?)", (history, *ids))
    async with Engine(store, orchestrate=False, work=False, index=str(tmp_path / "new.db")) as e:
        run = await e.get_run(ids[0])
        assert run.status == "completed" and run.tasks["ship"].output == {"total": 14}
        assert await e.index.archived(ids[0]) == f"file://{archive}/runs/{ids[0]}.jsonl.gz"
        assert {r.run_id for r in await e.list_runs()} == set(ids)
    async with Engine(store, orchestrate=False, work=False, index=str(tmp_path / "new.db")) as e:
        assert (await e.get_run(ids[1])).output == {"total": 24}  # a restart keeps them


async def test_an_unreadable_mark_is_skipped_with_a_warning(tmp_path, prefix, caplog):
    store = f"sqlite:///{tmp_path / 'events.db'}"
    ids = await _run(store, [3, 5])
    await _archive(store, tmp_path / "a.db", tmp_path / "archive")
    log = open_log(store)
    await log.start()
    try:
        topic = f"{prefix}.history.archived"
        await log.append([Message(topic, b'{"format": 99}', key=ids[0])])
    finally:
        await log.stop()
    async with Engine(store, orchestrate=False, work=False, index=str(tmp_path / "b.db")) as e:
        await e.index.sync()
        assert await e.index.archived(ids[1]) is not None
    assert "archive mark at offset" in caplog.text and "format 99" in caplog.text
