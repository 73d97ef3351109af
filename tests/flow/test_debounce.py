"""Debounce: one run per burst of runs of a key, the latest; the earlier end superseded
(memory, SQLite, Kafka)."""

from __future__ import annotations

import asyncio

import pytest

from deerflow import Concurrency, Debounce, DefinitionError, Engine, Workflow
from deerflow.core import history as h
from deerflow.flow import RunSuperseded
from tests.flow.checks import intervals, most_at_once, task_spans, until_admitted
from tests.logs import history


def debounced(name: str, **options: object) -> Workflow:
    wf = Workflow(name, debounce=Debounce(key="params.user", **options))  # type: ignore[arg-type]

    @wf.task(id="save")
    def save(context):
        return context.params["text"]

    return wf


async def test_a_burst_runs_once_with_the_latest_and_the_others_are_superseded(store):
    wf = debounced("autosave", period="1s")
    async with Engine(store, [wf]) as engine:
        burst = [
            await engine.start(wf, params={"user": "ann", "text": f"draft {i}"}) for i in range(4)
        ]
        other = await engine.start(wf, params={"user": "bob", "text": "hello"})
        results = await asyncio.gather(*(run.result(timeout=60) for run in [*burst, other]))
        later = await engine.start(wf, params={"user": "ann", "text": "final"})
        again = await later.result(timeout=60)
        events = await history(engine)
    assert [r.status for r in results] == ["superseded"] * 3 + ["completed", "completed"]
    assert results[3].output == "draft 3"
    assert results[4].output == "hello"  # another key: a burst of its own
    assert (again.status, again.output) == ("completed", "final")  # a new burst
    superseded = {e.run_id: e for e in events if isinstance(e, RunSuperseded)}
    assert sorted(superseded) == sorted(r.run_id for r in results[:3])
    for run, result in zip(burst[:3], results[:3], strict=True):
        assert result.error is not None and result.error.startswith("debounce of autosave/ann")
        assert result.tasks["save"].status == "pending"  # nothing of it ran
        assert superseded[run.run_id].by in {r.run_id for r in burst}
    # The survivor waited the period after the last run of the burst.
    ran = [e for e in events if isinstance(e, h.TaskCompleted) and e.run_id == burst[3].run_id]
    assert ran[0].started_at is not None and results[3].started_at is not None
    assert ran[0].started_at - results[3].started_at >= 1.0


async def test_a_burst_longer_than_the_timeout_still_runs(store):
    wf = debounced("capped", period="1s", timeout="1.5s")
    async with Engine(store, [wf]) as engine:
        runs = []
        for i in range(8):  # a run every 0.4 s for 3.2 s: the period never passes quietly
            runs.append(await engine.start(wf, params={"user": "ann", "text": f"v{i}"}))
            await asyncio.sleep(0.4)
        results = await asyncio.gather(*(run.result(timeout=60) for run in runs))
    completed = [r.output for r in results if r.status == "completed"]
    assert 2 <= len(completed) <= 4, [r.status for r in results]
    assert completed[-1] == "v7"
    assert {r.status for r in results} == {"completed", "superseded"}


async def test_with_a_concurrency_limit_each_bursts_latest_waits_for_the_slot(store):
    """Debounce and concurrency on one key: a burst's latest run queues for the key's one
    slot once its burst is over, so it starts only after the run holding it ended."""
    wf = Workflow(
        "serial_saves",
        debounce=Debounce(period="2s", key="params.user"),
        concurrency=Concurrency(limit=1, key="params.user"),
    )

    @wf.task(id="save")
    async def save(context):
        await asyncio.sleep(context.params.get("seconds", 0.0))
        return context.params["text"]

    async with Engine(store, [wf]) as engine:
        first = [
            await engine.start(wf, params={"user": "ann", "text": f"a{i}", "seconds": 3.0})
            for i in range(2)
        ]
        await until_admitted(engine, first[1])
        second = [await engine.start(wf, params={"user": "ann", "text": f"b{i}"}) for i in range(2)]
        await asyncio.sleep(2.5)  # the second burst is over while a1 still runs
        waiting = await second[1].status()
        results = await asyncio.gather(*(run.result(timeout=60) for run in [*first, *second]))
        spans = await intervals(engine)
        ran = await task_spans(engine)
    assert [r.status for r in results] == ["superseded", "completed"] * 2
    assert [results[1].output, results[3].output] == ["a1", "b1"]
    assert waiting.status == "queued"  # its debounce over, the slot still a1's
    assert most_at_once(spans["serial_saves/ann"]) == 1
    assert ran[first[1].run_id][1] <= ran[second[1].run_id][0]


def test_debounce_is_checked_when_the_workflow_is_defined():
    with pytest.raises(DefinitionError, match="workflow 'x': debounce period 'now' is not"):
        Workflow("x", debounce=Debounce(period="now"))
    with pytest.raises(DefinitionError, match="debounce timeout must be longer than 0"):
        Workflow("x", debounce=Debounce(period="1s", timeout=0))
    with pytest.raises(DefinitionError, match="workflow 'x': concurrency and debounce must share"):
        Workflow(
            "x",
            concurrency=Concurrency(limit=1, key="params.a"),
            debounce=Debounce(period="1s", key="params.b"),
        )
