"""The orchestrator keeps no state of ended runs: a tombstone each, and every guarantee holds."""

from __future__ import annotations

import asyncio
import gc
from collections import Counter
from collections.abc import Callable

import pytest

from deerflow import Engine, NonRetryableError, Workflow
from deerflow.core import history as h
from deerflow.web._runs import request_retry
from tests.logs import until
from tests.rss import peak_rss_mib


def shipping(executions: Counter[str], broken: set[str] | None = None) -> Workflow:
    """Two steps; ``label`` fails (for good) while its order is in ``broken``."""
    wf = Workflow(name="shipping")

    @wf.task(id="pick")
    def pick(context):
        executions[f"{context.run_id}/pick"] += 1
        return {"order": context.params["order"], "items": [1, 2, 3]}

    @wf.task(id="label", depends_on=["pick"])
    def label(context):
        executions[f"{context.run_id}/label"] += 1
        order = context.tasks["pick"].output["order"]
        if broken is not None and order in broken:
            raise NonRetryableError(f"no address for {order}")
        return {"label": f"L-{order}"}

    return wf


def evicted(engine: Engine, run_ids: list[str]) -> Callable[[], bool]:
    orchestrator = engine.orchestrator
    assert orchestrator is not None
    return lambda: all(orchestrator.knows(r) and r not in orchestrator.runs for r in run_ids)


async def test_ended_runs_leave_only_running_ones_in_the_orchestrator(store):
    executions: Counter[str] = Counter()
    wf = shipping(executions)
    release = asyncio.Event()

    @wf.task(id="wait", depends_on=["label"])
    async def wait(context):
        if context.params["order"] == "held":
            await release.wait()

    async with Engine(store, [wf]) as engine:
        held = await engine.start(wf, params={"order": "held"})
        handles = [await engine.start(wf, params={"order": i}) for i in range(20)]
        results = [await handle.result(timeout=60) for handle in handles]
        assert [r.status for r in results] == ["completed"] * 20
        await until(evicted(engine, [h.run_id for h in handles]))
        assert engine.orchestrator is not None
        assert set(engine.orchestrator.runs) == {held.run_id}  # the running one keeps its state
        release.set()
        assert (await held.result(timeout=60)).status == "completed"
        await until(evicted(engine, [held.run_id]))
        assert engine.orchestrator.runs == {}
        # The run index still answers for every run.
        assert len(await engine.list_runs(workflow="shipping")) == 21


async def test_starting_an_ended_run_id_again_neither_runs_it_again_nor_changes_it(store):
    executions: Counter[str] = Counter()
    wf = shipping(executions)
    async with Engine(store, [wf]) as engine:
        first = await (await engine.start(wf, params={"order": "a"}, run_id="order-7")).result(
            timeout=60
        )
        await until(evicted(engine, ["order-7"]))
        again = await engine.start(wf, params={"order": "b"}, run_id="order-7")
        result = await again.result(timeout=60)
        # Give the loop time to read the duplicate from the log: a later run has gone through.
        await (await engine.start(wf, params={"order": "later"})).result(timeout=60)
        await until(lambda: engine.orchestrator is not None and engine.orchestrator.lag() == 0)
    assert result.status == "completed" and result.output == first.output == {"label": "L-a"}
    assert executions["order-7/pick"] == 1 and executions["order-7/label"] == 1


async def test_a_failed_run_is_retried_after_its_state_was_evicted(store):
    executions: Counter[str] = Counter()
    broken = {"x"}
    wf = shipping(executions, broken)
    async with Engine(store, [wf]) as engine:
        failed = await (await engine.start(wf, params={"order": "x"})).result(timeout=60)
        assert failed.status == "failed"
        await until(evicted(engine, [failed.run_id]))
        broken.clear()
        assert await request_retry(engine, failed.run_id) == 1
        done = await engine.index.wait(failed.run_id, lambda s: s.status == "completed", 60)
        assert done is not None and done.output == {"label": "L-x"}
        await until(evicted(engine, [failed.run_id]))  # ended again: evicted again
        # A late duplicate of the same retry request changes nothing.
        await engine.append_history(
            [
                h.RunRetryRequested(
                    id=h.event_id(failed.run_id, "retry", 1), run_id=failed.run_id, retry=1
                )
            ]
        )
        await (await engine.start(wf, params={"order": "later"})).result(timeout=60)
        result = await engine.get_run(failed.run_id)
    assert result.status == "completed" and result.tasks["pick"].attempts == 1
    assert executions[f"{failed.run_id}/pick"] == 1  # its output was kept, not recomputed
    assert executions[f"{failed.run_id}/label"] == 2


async def test_a_restarted_engine_holds_no_ended_run_and_still_retries_and_deduplicates(store):
    executions: Counter[str] = Counter()
    broken = {"bad"}
    wf = shipping(executions, broken)
    async with Engine(store, [wf]) as engine:
        good = [await engine.start(wf, params={"order": i}) for i in range(5)]
        bad = await engine.start(wf, params={"order": "bad"})
        for handle in [*good, bad]:
            await handle.result(timeout=60)
    ended = [h.run_id for h in [*good, bad]]
    broken.clear()
    async with Engine(store, [wf]) as engine:
        # Rebuilding the partitions folds every run from the log, then keeps tombstones only.
        await until(evicted(engine, ended), timeout=60)
        assert engine.orchestrator is not None and engine.orchestrator.runs == {}
        again = await engine.start(wf, params={"order": 99}, run_id=good[0].run_id)
        assert (await again.result(timeout=60)).output == {"label": "L-0"}
        await request_retry(engine, bad.run_id)
        retried = await engine.index.wait(bad.run_id, lambda s: s.status == "completed", 60)
        assert retried is not None and retried.output == {"label": "L-bad"}
    assert executions[f"{good[0].run_id}/pick"] == 1
    assert executions[f"{bad.run_id}/pick"] == 1 and executions[f"{bad.run_id}/label"] == 2


async def test_a_run_cancelled_in_a_long_retry_wait_leaves_no_timer_behind(store):
    wf = Workflow(name="patient")

    @wf.task(id="call", retries=3, retry_delay=3600)
    def call(context):
        raise ConnectionError("refused")

    async with Engine(store, [wf]) as engine:
        handle = await engine.start(wf)
        await engine.index.wait(
            handle.run_id, lambda s: bool(s.tasks.get("call") and s.tasks["call"].timer_id), 60
        )
        await handle.cancel()
        assert (await handle.result(timeout=60)).status == "cancelled"
        await until(evicted(engine, [handle.run_id]))
        assert engine.orchestrator is not None
        assert engine.orchestrator._timers == []  # not an entry pinned for an hour


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_thousands_of_runs_leave_no_ended_state_behind(tmp_path):
    """``pytest -m slow -s tests/engine/test_orchestrator_memory.py`` prints the figures."""
    runs = 3_000
    wf = shipping(Counter())
    async with Engine(f"sqlite:///{tmp_path / 'events.db'}", [wf]) as engine:
        gc.collect()
        before = peak_rss_mib()
        run_ids: list[str] = []
        for start in range(0, runs, 100):
            batch = [
                await engine.start(wf, params={"order": i, "note": "x" * 200})
                for i in range(start, start + 100)
            ]
            for handle in batch:
                await handle.result(timeout=120)
            run_ids.extend(handle.run_id for handle in batch)
        await until(evicted(engine, run_ids), timeout=60)
        assert engine.orchestrator is not None and engine.orchestrator.runs == {}
        print(f"\n{runs} runs: peak RSS {before:.1f} -> {peak_rss_mib():.1f} MiB")


def test_a_run_reopened_and_ended_again_is_due_only_once_its_later_ending_is_appended():
    """Eviction and end waiters go by a run's last ending: after a retry reopened it in
    memory, the first ending being durable says nothing about the second."""
    from deerflow.runtime._tombstones import EndedRuns

    ended = EndedRuns()
    ended.ending(1, ["r", "other"])
    ended.ending(3, ["r"])  # retried, and ended again in submission 3
    assert ended.durable(2, {"r", "other"}) == ["other"]
    assert list(ended.due(2)) == ["other"]
    assert ended.durable(2, {"r"}) == []
    assert ended.durable(3, {"r"}) == ["r"]
    assert list(ended.due(3)) == ["r"]
    assert list(ended.due(10)) == [] and ended.durable(10, {"r"}) == []
