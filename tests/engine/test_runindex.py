"""The run index: durable rows a fresh process reads, the tail applied on restart, filters."""

from __future__ import annotations

import logging
import os
import sqlite3
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from deerflow import Engine, NonRetryableError, Workflow
from deerflow.core import history as h
from deerflow.core.state import RunState
from deerflow.errors import DeerflowError
from deerflow.log.base import TopicPartition
from deerflow.runtime._runrows import Change, RunQuery
from deerflow.runtime._visibility import VisibilityStore


def orders() -> Workflow:
    wf = Workflow(name="orders")

    @wf.task(id="price")
    def price(context):
        if context.input.get("bad"):
            raise NonRetryableError("no price")
        context.set_search_attributes(
            {
                "customer": context.input["customer"],
                "amount": context.input["amount"],
                "rush": context.input["amount"] > 10,
                "placed": datetime(2026, 1, context.input["amount"] % 28 + 1, tzinfo=UTC),
            }
        )
        return context.input["amount"] * 2

    @wf.task(id="ship", depends_on=["price"])
    def ship(context):
        return {"total": context.tasks["price"].output}

    return wf


def other() -> Workflow:
    wf = Workflow(name="other")

    @wf.task(id="only")
    def only(context):
        return "ok"

    return wf


@pytest.fixture(params=["sqlite", pytest.param("kafka", marks=pytest.mark.kafka)])
def durable_store(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch) -> str:
    """A store that outlives its engines; Kafka's run index in a file of this test's own."""
    monkeypatch.setenv("DEERFLOW_PREFIX", f"t{uuid.uuid4().hex[:10]}")
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'events.db'}"  # the index: tables in the store file
    monkeypatch.setenv("DEERFLOW_INDEX", str(tmp_path / "index.db"))
    return str(request.getfixturevalue("kafka_url"))


async def _run_some(
    store: str, customers: list[tuple[str, int]], bad: int = 0, index: str | None = None
) -> list[str]:
    wfs = [orders(), other()]
    async with Engine(store, wfs, index=index) as engine:
        handles = [
            await engine.start("orders", input={"customer": c, "amount": a}) for c, a in customers
        ]
        handles += [await engine.start("orders", input={"bad": True}) for _ in range(bad)]
        handles.append(await engine.start("other"))
        for handle in handles:
            await handle.result(timeout=60)
        return [hd.run_id for hd in handles]


def _stored_offsets(store: str) -> dict[int, int]:
    """The offsets the index file says it applied, read without starting an index."""
    path = store.removeprefix("sqlite:///") if store.startswith("sqlite") else None
    with sqlite3.connect(path or os.environ["DEERFLOW_INDEX"]) as conn:
        rows = conn.execute("SELECT partition_id, next_offset FROM runindex_offsets")
        return dict(rows.fetchall())


async def _history_end(engine: Engine) -> dict[int, int]:
    topic = engine.topics.history
    count = await engine.log.partition_count(topic)
    ends = {}
    for p in range(count):
        records = await engine.log.read_partition(TopicPartition(topic, p))
        ends[p] = records[-1].offset + 1 if records else 0
    return ends


async def test_a_fresh_process_answers_get_run_and_the_first_page_from_the_index(durable_store):
    ids = await _run_some(durable_store, [("acme", 3), ("acme", 12), ("zeta", 5)], bad=1)
    async with Engine(durable_store, orchestrate=False, work=False) as engine:
        assert len(await engine.list_runs()) == 5  # a dashboard, say: the index is current
    async with Engine(durable_store, orchestrate=False, work=False) as engine:
        page = await engine.list_runs(workflow="orders", limit=2)
        assert len(engine.index.runs) == 0  # answered from rows: no run folded
        assert [r.run_id for r in page] == [ids[3], ids[2]]  # newest first
        rest = await engine.list_runs(workflow="orders", limit=10, after=page[-1].run_id)
        assert [r.run_id for r in rest] == [ids[1], ids[0]]
        assert rest[0].output == {"total": 24} and rest[0].tasks == {}
        failed = await engine.list_runs(status="failed")
        assert [r.run_id for r in failed] == [ids[3]]
        assert failed[0].failed_task == "price"
        assert await engine.count_runs() == {"completed": 4, "failed": 1}
        assert await engine.count_runs(workflow="other") == {"completed": 1}
        assert await engine.count_runs(trigger="manual") == {"completed": 4, "failed": 1}
        assert [r.run_id for r in await engine.list_runs(trigger="manual", limit=1)] == [ids[4]]
        assert await engine.list_runs(since=time.time() + 60) == []
        assert len(await engine.list_runs(until=time.time())) == 5

        old = await engine.get_run(ids[0])  # the oldest run: its own history folded
        assert old.status == "completed" and old.output == {"total": 6}
        assert old.tasks["price"].output == 6 and old.tasks["ship"].attempts == 1
        assert list(engine.index.runs) == [ids[0]]  # that run only
        with pytest.raises(DeerflowError, match="no run 'nope' to list runs after"):
            await engine.list_runs(after="nope")
        ended = await engine.index.ended_before(time.time() + 1)
        assert sorted(r.run_id for r in ended) == sorted(ids)  # with where each one lies
        ends = [(await engine.get_run(r.run_id)).finished_at or 0.0 for r in ended]
        assert ends == sorted(ends)  # the oldest end first
        assert all(r.first_offset <= r.last_offset for r in ended)


async def test_a_restart_applies_only_the_tail_from_the_offsets_it_stored(durable_store):
    await _run_some(durable_store, [("acme", 1), ("acme", 2)])
    async with Engine(durable_store, orchestrate=False, work=False) as engine:
        await engine.list_runs()
        stored = await engine.index.applied()
        assert stored == await _history_end(engine)  # everything, and no more
        first_total = sum(stored.values())
    # Run by a process whose own index is elsewhere: the stored one falls behind.
    await _run_some(durable_store, [("acme", 3)], index=":memory:")
    assert _stored_offsets(durable_store) == {p: o for p, o in stored.items() if o}
    async with Engine(durable_store, orchestrate=False, work=False) as engine:
        assert len(await engine.list_runs()) == 5
        after = await engine.index.applied()
        assert after == await _history_end(engine)
        tail = sum(after.values()) - first_total
        assert 0 < tail < first_total
        assert engine.index.applied_records == tail  # only the tail was read and applied


async def test_a_search_attribute_set_by_a_task_is_filterable(durable_store):
    ids = await _run_some(durable_store, [("acme", 3), ("acme", 12), ("zeta", 12)])
    async with Engine(durable_store, orchestrate=False, work=False) as engine:
        acme = await engine.list_runs(attributes={"customer": "acme"})
        assert [r.run_id for r in acme] == [ids[1], ids[0]]
        both = await engine.list_runs(attributes={"customer": "acme", "amount": 12})
        assert [r.run_id for r in both] == [ids[1]]
        assert [r.run_id for r in await engine.list_runs(attributes={"rush": True})] == [
            ids[2],
            ids[1],
        ]
        placed = datetime(2026, 1, 4, tzinfo=UTC)
        assert [r.run_id for r in await engine.list_runs(attributes={"placed": placed})] == [ids[0]]
        assert await engine.list_runs(attributes={"amount": "12"}) == []  # typed: a str is not 12
        run = await engine.get_run(ids[2])
        assert run.search_attributes == {
            "customer": "zeta",
            "amount": 12,
            "rush": True,
            "placed": datetime(2026, 1, 13, tzinfo=UTC),
        }
        with pytest.raises(TypeError, match="search attribute 'x' is a list"):
            await engine.list_runs(attributes={"x": [1]})


async def test_a_corrupt_index_file_is_rebuilt_from_the_log_with_a_warning(
    durable_store, tmp_path, caplog
):
    if durable_store.startswith("sqlite"):
        pytest.skip("embedded mode keeps the index inside the store file")
    ids = await _run_some(durable_store, [("acme", 1)])
    async with Engine(durable_store, orchestrate=False, work=False) as engine:
        assert len(await engine.list_runs()) == 2
    index = tmp_path / "index.db"
    assert index.exists()
    index.write_bytes(b"not an index" * 1000)
    for suffix in ("-wal", "-shm"):
        Path(f"{index}{suffix}").unlink(missing_ok=True)
    with caplog.at_level(logging.WARNING, logger="deerflow.runindex"):
        async with Engine(durable_store, orchestrate=False, work=False) as engine:
            assert (await engine.get_run(ids[0])).output == {"total": 2}
            assert len(await engine.list_runs()) == 2
    assert any("is corrupt" in r.getMessage() for r in caplog.records)


async def test_a_deleted_index_file_is_rebuilt_from_the_log_with_a_warning(
    tmp_path, monkeypatch, caplog
):
    monkeypatch.setenv("DEERFLOW_INDEX", str(tmp_path / "index.db"))
    store = f"sqlite:///{tmp_path / 'events.db'}"
    ids = await _run_some(store, [("acme", 1), ("zeta", 2)])
    async with Engine(store, orchestrate=False, work=False) as engine:
        assert len(await engine.list_runs()) == 3
    for suffix in ("", "-wal", "-shm"):
        Path(f"{tmp_path / 'index.db'}{suffix}").unlink(missing_ok=True)
    with caplog.at_level(logging.WARNING, logger="deerflow.runindex"):
        async with Engine(store, orchestrate=False, work=False) as engine:
            runs = await engine.list_runs(attributes={"customer": "zeta"})
    assert [r.run_id for r in runs] == [ids[1]]
    assert any("rebuilding it from the whole history" in r.getMessage() for r in caplog.records)


async def test_duplicates_of_history_events_do_not_change_rows(durable_store):
    ids = await _run_some(durable_store, [("acme", 1)], bad=1)
    async with Engine(durable_store, orchestrate=False, work=False) as engine:
        before = {r.run_id: r for r in await engine.list_runs()}
        done = await engine.get_run(ids[0])
        failed = await engine.get_run(ids[1])
    async with Engine(durable_store, orchestrate=False, work=False) as engine:
        copies: list[h.HistoryEvent] = []
        for rid in ids[:2]:
            for record in await engine.index.records(rid):
                copies.append(h.decode(record.value))
        await engine.append_history(copies)  # every event of both runs once more
        await engine.append_history(
            [h.RunCompleted(id=h.event_id(ids[1], "completed"), run_id=ids[1], output="late")]
        )
        after = {r.run_id: r for r in await engine.list_runs()}
        assert after == before
        assert await engine.get_run(ids[0]) == done
        assert await engine.get_run(ids[1]) == failed
        assert await engine.count_runs() == {"completed": 2, "failed": 1}


async def test_memory_stays_bounded_by_the_live_runs_limit(tmp_path, monkeypatch):
    monkeypatch.setenv("DEERFLOW_PREFIX", f"t{uuid.uuid4().hex[:10]}")
    store = f"sqlite:///{tmp_path / 'events.db'}"
    ids = await _run_some(store, [("acme", n) for n in range(1, 9)])
    async with Engine(store, orchestrate=False, work=False) as engine:
        engine.index._limit = 3  # a small bound, to observe it
        for rid in ids:
            assert (await engine.get_run(rid)).done
        assert len(engine.index.runs) == 3
        assert list(engine.index.runs) == ids[-3:]  # the ones asked for last


def test_counts_follow_a_run_through_parking_failure_and_retry_and_ignore_stale_rows():
    store = VisibilityStore(":memory:", "test", own_file=False)
    store.open()
    for offset, status, parked in [
        (1, "running", None),
        (2, "running", "the definition changed"),
        (3, "running", None),
        (4, "failed", None),
        (3, "completed", None),  # folded less far than the row: ignored
        (5, "running", None),  # retried
    ]:
        state = RunState(run_id="r", workflow="w", requested=True, status=status, parked=parked)
        state.started_at = 1.0
        store.apply("history", [Change(state, 0, 0, offset)], {0: offset + 1})
        assert store.counts() == store.counts(RunQuery(trigger="manual"))  # kept == scanned
    assert store.counts() == {"running": 1}
    assert store.counts(RunQuery(workflow="w")) == {"running": 1}
    assert store.offsets("history") == {0: 6}


async def test_a_value_too_large_for_its_row_is_read_back_from_the_runs_history(tmp_path):
    wf = Workflow(name="big")

    @wf.task(id="make")
    def make(context):
        return "x" * 20_000

    store = f"sqlite:///{tmp_path / 'events.db'}"
    async with Engine(store, [wf]) as engine:
        run_id = (await (await engine.start(wf, input="y" * 10_000)).result(timeout=60)).run_id
    async with Engine(store, orchestrate=False, work=False) as engine:
        (listed,) = await engine.list_runs()
        assert listed.run_id == run_id
        assert listed.output == "x" * 20_000 and listed.input == "y" * 10_000


async def test_a_run_started_here_is_found_at_once_while_other_runs_write(durable_store):
    """Read your writes: ``get_run`` right after ``start`` finds the run, also while the
    index's reader is busy with other runs' records (on Kafka, a fetch answered before the
    start's append can make the reader look caught up)."""
    missing = []
    async with Engine(durable_store, [orders(), other()]) as engine:
        busy = [await engine.start("other") for _ in range(20)]
        for i in range(150):
            handle = await engine.start("orders", input={"customer": f"c{i}", "amount": 1})
            try:
                await engine.get_run(handle.run_id)
            except DeerflowError:
                missing.append(i)
            if i % 10 == 0:
                busy.append(await engine.start("other"))
        for handle in busy:
            await handle.result(timeout=60)
    assert missing == []
