"""The functional fan-out form (``parallel`` / ``gather``) and the per-run concurrency limit."""

from __future__ import annotations

import asyncio

import pytest

from deerflow import DeerflowError, DefinitionError, Engine, Workflow, gather, parallel


async def run(wf: Workflow, store: str = "memory://"):
    async with Engine(store, [wf]) as engine:
        return await (await engine.start(wf)).result(timeout=60)


async def test_parallel_node_and_gather_fan_out_and_in_like_the_decorator():
    wf = Workflow(name="functional_fanout")

    @wf.task(id="split")
    def split(context):
        return {"chunks": [[1, 2], [3], [4, 5, 6]], "label": "x"}

    async def total(chunk, context):
        return sum(chunk)

    wf.add(parallel(total, over="split.chunks", id="totals", max_parallel=2))

    @wf.task(id="merge", depends_on=["totals"])
    def merge(context):
        return {"gathered": gather("totals"), "same": context.parallel_results["totals"]}

    result = await run(wf)
    assert result.output == {"gathered": [3, 3, 15], "same": [3, 3, 15]}
    assert wf.get("totals").depends_on == ("split",)  # taken from over=


async def test_parallel_over_a_task_whose_output_is_the_list():
    wf = Workflow(name="functional_list")
    wf.task(id="numbers")(lambda context: [1, 2, 3])
    wf.add(parallel(lambda n, context: n * n, over="numbers", id="squares"))
    wf.task(id="sum", depends_on=["squares"])(lambda context: sum(gather("squares", context)))
    assert (await run(wf)).output == 14


def test_parallel_needs_a_source_and_gather_needs_a_task():
    with pytest.raises(DefinitionError, match="needs over="):
        parallel(lambda item, context: item)
    with pytest.raises(DeerflowError, match="outside a task"):
        gather("anything")
    with pytest.raises(DefinitionError, match="is not a node"):
        Workflow(name="not_a_node").add(object())  # type: ignore[arg-type]


async def test_a_run_never_runs_more_tasks_at_once_than_its_workflow_allows(store):
    running, peak = 0, 0

    async def body(*_):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.02)
        running -= 1
        return 1

    wf = Workflow(name="bounded_run", max_parallel=2)
    for name in ("a", "b", "c"):
        wf.task(id=name)(body)
    wf.task(id="items", depends_on=["a"])(lambda context: list(range(12)))
    wf.parallel_tasks(id="fan", depends_on=["items"])(body)
    wf.task(id="end", depends_on=["fan", "b", "c"])(lambda context: len(gather("fan")))
    result = await run(wf, store)
    assert result.status == "completed" and result.output == 12
    assert peak <= 2


def test_max_parallel_must_be_positive():
    with pytest.raises(DefinitionError, match="max_parallel must be >= 1"):
        Workflow(name="zero", max_parallel=0)
