"""Guarantee: a run never silently continues on code that changed under it.

A run starts on a 3-step workflow and stops mid-way (its second task waits on a retry timer
when the process stops). The process comes back with the workflow changed under the same
version: a task removed, renamed, or the dependencies reordered. Criteria: the run is
*parked* (not failed, not continued): its status says ``parked`` with an error naming the
change, nothing more is scheduled, no effect repeats. When the original definition is
registered again as version "1" next to the new one as version "2", the parked run finishes on
version "1" (each effect once) and new runs use version "2".
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from deerflow import Engine, Workflow
from tests.engine.apps.sink import Sink
from tests.reliability.history_checker import check_log
from tests.reliability.support import effects_by_run


def three_steps(
    sink: Sink, *, version: str = "1", shape: dict[str, list[str]] | None = None
) -> Workflow:
    """extract -> transform -> load (or ``shape``); transform fails its first attempt."""
    shape = shape or {"extract": [], "transform": ["extract"], "load": ["transform"]}
    wf = Workflow(name="etl", version=version)

    def body(task_id: str) -> Callable[[Any], str]:
        def run(context: Any) -> str:
            if task_id == "transform" and context.attempt == 1:
                raise ConnectionError("warehouse busy")
            sink.record(context.idempotency_key, context.attempt)
            return task_id

        return run

    for task_id, deps in shape.items():
        wf.task(id=task_id, depends_on=deps, retries=2, retry_delay=1.0)(body(task_id))
    return wf


CHANGES = {
    "removed": ({"extract": [], "transform": ["extract"]}, "tasks ['load'] removed"),
    "renamed": (
        {"extract": [], "reshape": ["extract"], "load": ["reshape"]},
        "tasks ['transform'] removed; tasks ['reshape'] added",
    ),
    "reordered": (
        {"extract": [], "load": ["extract"], "transform": ["load"]},
        "task 'transform' now depends on ['load'] instead of ['extract']",
    ),
}


async def wait_for(engine: Engine, run_id: str, check: Callable[[Any], bool]) -> None:
    state = await engine.index.wait(run_id, check, timeout=30)
    assert state is not None, f"run {run_id} did not get there"


@pytest.mark.parametrize("change", list(CHANGES))
async def test_a_run_whose_definition_changed_is_parked_then_finishes_on_its_version(
    change, tmp_path, sink
):
    store = f"sqlite:///{tmp_path / 'events.db'}"
    new_shape, named = CHANGES[change]
    original = three_steps(sink)
    async with Engine(store, [original]) as engine:
        run_id = (await engine.start(original, run_id="etl-1")).run_id
        await wait_for(
            engine,
            run_id,
            lambda s: (
                s.tasks.get("transform") is not None and s.tasks["transform"].status == "retry_wait"
            ),
        )

    changed = three_steps(sink, shape=new_shape)
    async with Engine(store, [changed]) as engine:
        await asyncio.sleep(1.5)  # past the retry timer: a live run would schedule again
        run = await engine.get_run(run_id)
        assert engine.orchestrator is not None and run_id in engine.orchestrator.parked
        # A process with no definition at all (a CLI, a dashboard) reads it from the history.
        async with Engine(store, [], orchestrate=False, work=False) as client:
            seen_elsewhere = await client.get_run(run_id)
        history = await check_log(engine.log, engine.topics.history)
    assert run.status == "parked" and not run.done
    assert seen_elsewhere.status == "parked" and seen_elsewhere.error == run.error
    assert named in (run.error or ""), run.error
    assert "Workflow(version=" in (run.error or "")
    scheduled = [t for t in history.runs[run_id].scheduled]
    assert scheduled == ["extract", "transform"], "something was scheduled while parked"
    assert effects_by_run(sink) == {run_id: {"extract"}}

    renamed = three_steps(sink, version="2", shape=new_shape)
    async with Engine(store, [original, renamed]) as engine:
        await wait_for(engine, run_id, lambda s: s.parked is None)  # its owner resumed it
        assert (await engine.get_run(run_id)).status in ("running", "completed")
        assert not await engine.list_runs(status="parked")
        finished = await engine.wait(run_id, timeout=30)
        fresh = await (await engine.start("etl", run_id="etl-2")).result(timeout=30)
        history = await check_log(engine.log, engine.topics.history)
    assert finished.status == "completed" and finished.version == "1"
    assert fresh.status == "completed" and fresh.version == "2"
    history.assert_ok([run_id, "etl-2"], exact=True)
    assert effects_by_run(sink)[run_id] == {"extract", "transform", "load"}
    assert sink.executions(f"{run_id}/extract") == 1  # not re-executed by any of this
    assert effects_by_run(sink)["etl-2"] == set(new_shape)


def test_declaring_the_same_tasks_in_another_order_is_not_a_change(sink):
    diamond = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}
    swapped = {"a": [], "c": ["a"], "b": ["a"], "d": ["c", "b"]}
    first, second = three_steps(sink, shape=diamond), three_steps(sink, shape=swapped)
    assert first.fingerprint() == second.fingerprint()
    assert first.fingerprint() != three_steps(sink, shape={**diamond, "d": ["b"]}).fingerprint()
