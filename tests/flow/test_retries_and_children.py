"""A run an operator retries queues at its gate again; a sub-workflow run its gate ends tells
its parent (memory, SQLite, Kafka)."""

from __future__ import annotations

import asyncio
from typing import Any

from deerflow import Batch, Concurrency, Debounce, Engine, RateLimit, Workflow
from deerflow.core import history as h
from deerflow.flow import FlowReleased, RunAdmitted, RunQueued
from deerflow.web._runs import request_retry
from tests.flow.checks import until_admitted, until_status
from tests.logs import history

#: runs whose first try fails (the task reads and clears its flag)
FAIL_ONCE: set[str] = set()


def flaky() -> Workflow:
    """One task per customer at once; a run whose ``n`` is in :data:`FAIL_ONCE` fails once;
    ``seconds`` long."""
    wf = Workflow("flaky", concurrency=Concurrency(limit=1, key="params.customer"))

    @wf.task(id="work")
    async def work(context: Any) -> Any:
        n = context.params.get("n")
        if n in FAIL_ONCE:
            FAIL_ONCE.discard(n)
            raise RuntimeError(f"{n} fails once")
        await asyncio.sleep(context.params.get("seconds", 0.0))
        return n

    return wf


async def test_a_retried_run_queues_again_behind_the_run_holding_its_slot(store):
    wf = flaky()
    FAIL_ONCE.add("first")
    async with Engine(store, [wf]) as engine:
        first = await engine.start(wf, params={"customer": "c", "n": "first"})
        assert (await first.result(timeout=60)).status == "failed"
        holder = await engine.start(wf, params={"customer": "c", "n": "holder", "seconds": 3600})
        await until_admitted(engine, holder)
        assert await request_retry(engine, first.run_id) == 1
        await until_status(first, "queued")
        await asyncio.sleep(1.0)  # time for an ungated retry to run
        still = await first.status()
        await engine.cancel(holder.run_id)
        result = await first.result(timeout=60)
        events = await history(engine, first.run_id)
    assert still.status == "queued"  # the holder has the key's one slot
    assert result.status == "completed", result.error
    assert result.output == "first"
    # Each try queued, was admitted and released its slot, with ids of its own.
    for kind in (RunQueued, RunAdmitted, FlowReleased):
        assert len({e.id for e in events if isinstance(e, kind)}) == 2, kind.__name__
    assert [e.retry for e in events if isinstance(e, RunQueued)] == [0, 1]


def parent_of(child: Workflow) -> Workflow:
    parent = Workflow(f"parent_of_{child.name}")

    @parent.task(id="key")
    def key(context: Any) -> dict[str, Any]:
        return {"k": "one", "n": context.params.get("n")}

    parent.sub_workflow(id="child", workflow=child, depends_on=["key"])
    return parent


def echo(name: str, **flow: Any) -> Workflow:
    wf = Workflow(name, **flow)

    @wf.task(id="echo")
    def run(context: Any) -> Any:
        return context.input["n"]

    return wf


def failed_child_tasks(events: list[h.HistoryEvent], parent: str) -> list[str]:
    return [
        e.error
        for e in events
        if isinstance(e, h.TaskFailed) and e.run_id == parent and e.task_id == "child"
    ]


async def test_a_sub_workflow_run_its_gate_drops_fails_its_parents_task(store):
    child = echo("limited_child", rate_limit=RateLimit(limit=1, period="1h", on_excess="drop"))
    parent = parent_of(child)
    async with Engine(store, [parent, child]) as engine:
        ok = await (await engine.start(parent, params={"n": 1})).result(timeout=60)
        late = await (await engine.start(parent, params={"n": 2})).result(timeout=60)
        events = await history(engine)
    assert ok.status == "completed" and ok.output == 1
    assert late.status == "failed"  # told, not left waiting for a child that never runs
    [error] = failed_child_tasks(events, late.run_id)
    assert "dropped: rate limit" in error


async def test_a_sub_workflow_run_a_newer_one_supersedes_fails_its_parents_task(store):
    child = echo("debounced_child", debounce=Debounce(period="2s", key="input.k"))
    parent = parent_of(child)
    async with Engine(store, [parent, child]) as engine:
        runs = [await engine.start(parent, params={"n": n}) for n in (1, 2)]
        results = await asyncio.gather(*(run.result(timeout=60) for run in runs))
        events = await history(engine)
    # The child requested last goes on (which one depends on when each parent's first task
    # ended); the other parent's task is told its child was superseded.
    assert sorted(r.status for r in results) == ["completed", "failed"]
    [done] = [(n, r) for n, r in zip((1, 2), results, strict=True) if r.status == "completed"]
    assert done[1].output == done[0]
    [lost] = [r for r in results if r.status == "failed"]
    [error] = failed_child_tasks(events, lost.run_id)
    assert "superseded" in error


async def test_sub_workflow_runs_batched_together_give_each_parent_the_batch_runs_output(store):
    child = Workflow("batched_child", batch=Batch(max_size=2, timeout="30s", key="input.k"))

    @child.task(id="total")
    def total(context: Any) -> Any:
        return sorted(event["input"]["n"] for event in context.trigger_events)

    parent = parent_of(child)
    async with Engine(store, [parent, child]) as engine:
        runs = [await engine.start(parent, params={"n": n}) for n in (1, 2)]
        results = await asyncio.gather(*(run.result(timeout=60) for run in runs))
        events = await history(engine)
    assert [(r.status, r.output) for r in results] == [("completed", [1, 2])] * 2
    assert not [e for e in events if isinstance(e, h.TaskFailed)]  # told once, the output


async def test_the_parents_of_a_failed_batch_run_all_fail_with_its_error(store):
    child = Workflow("failing_batch", batch=Batch(max_size=2, timeout="30s", key="input.k"))

    @child.task(id="total", retries=0)
    def total(context: Any) -> Any:
        raise RuntimeError(f"{len(context.trigger_events)} charges refused")

    parent = parent_of(child)
    async with Engine(store, [parent, child]) as engine:
        runs = [await engine.start(parent, params={"n": n}) for n in (1, 2)]
        results = await asyncio.gather(*(run.result(timeout=60) for run in runs))
    assert [r.status for r in results] == ["failed", "failed"]
    assert all("2 charges refused" in (r.error or "") for r in results), results


async def test_a_sub_workflow_run_dropped_at_its_second_gate_fails_its_parents_task(store):
    child = echo(
        "two_gate_child",
        concurrency=Concurrency(limit=1, key="input.k"),
        rate_limit=RateLimit(limit=1, period="1h", key="input.n", on_excess="drop"),
    )
    parent = parent_of(child)
    async with Engine(store, [parent, child]) as engine:
        ok = await (await engine.start(parent, params={"n": 1})).result(timeout=60)
        late = await (await engine.start(parent, params={"n": 1})).result(timeout=60)
        other = await (await engine.start(parent, params={"n": 2})).result(timeout=60)
        events = await history(engine)
    assert (ok.status, ok.output) == ("completed", 1)
    assert late.status == "failed"  # told, not left waiting
    [error] = failed_child_tasks(events, late.run_id)
    assert "dropped: rate limit of two_gate_child:rate/1" in error
    assert (other.status, other.output) == ("completed", 2)  # the dropped run's slot was freed
