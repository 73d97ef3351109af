"""Fan-out/fan-in and sub-workflows on every store."""

from __future__ import annotations

import asyncio

from deerflow import Engine, Workflow


def fan_out_workflow(width: int, max_parallel: int | None = None) -> Workflow:
    wf = Workflow(name="parallel_processing")

    @wf.task(id="split")
    def split_data(context):
        return {"chunks": [list(range(i, i + 3)) for i in range(0, 3 * width, 3)]}

    @wf.parallel_tasks(id="process_chunks", depends_on=["split"], max_parallel=max_parallel)
    async def process_chunk(chunk, context):
        await asyncio.sleep(0.01)
        return sum(chunk)

    @wf.task(id="merge", depends_on=["process_chunks"])
    def merge_results(context):
        results = context.parallel_results["process_chunks"]
        return {"count": len(results), "total": sum(results), "first": results[:3]}

    return wf


async def test_fan_out_runs_each_item_and_fan_in_keeps_item_order(store):
    wf = fan_out_workflow(20, max_parallel=4)
    async with Engine(store, [wf]) as engine:
        result = await (await engine.start(wf)).result(timeout=60)
    assert result.status == "completed"
    assert result.output == {"count": 20, "total": sum(range(60)), "first": [3, 12, 21]}
    assert result.tasks["process_chunks/19"].output == 57 + 58 + 59
    assert result.tasks["process_chunks"].output[0] == 3


async def test_a_failing_item_fails_the_node_and_skips_downstream(store):
    wf = Workflow(name="fanout_fail")

    @wf.task(id="split")
    def split(context):
        return [1, 2, 0, 4]

    @wf.parallel_tasks(id="invert", depends_on=["split"], retries=1, retry_delay=0.01)
    def invert(item, context):
        return 1 / item

    @wf.task(id="after", depends_on=["invert"])
    def after(context):
        return "never"

    async with Engine(store, [wf]) as engine:
        result = await (await engine.start(wf)).result(timeout=60)
    assert result.status == "failed"
    assert result.failed_task == "invert"
    assert result.tasks["invert/2"].attempts == 2
    assert "division by zero" in (result.tasks["invert"].error or "")
    assert result.tasks["after"].status == "skipped"


async def test_a_sub_workflow_runs_as_a_child_run_and_hands_back_its_output(store):
    validation = Workflow(name="data_validation")

    @validation.task(id="schema_check")
    def check_schema(context):
        return {"rows": context.input["rows"], "schema_ok": True}

    @validation.task(id="quality_check", depends_on=["schema_check"])
    def check_quality(context):
        rows = context.tasks["schema_check"].output["rows"]
        return {"rows": [r for r in rows if r >= 0], "dropped": sum(1 for r in rows if r < 0)}

    main = Workflow(name="etl_with_validation")

    @main.task(id="extract")
    def extract(context):
        return {"rows": [3, -1, 4, -1, 5]}

    @main.sub_workflow(id="validate", workflow=validation, depends_on=["extract"])
    @main.task(id="transform", depends_on=["validate"])
    def transform(context):
        validated = context.tasks["validate"].output
        return {"total": sum(validated["rows"]), "dropped": validated["dropped"]}

    async with Engine(store, [main]) as engine:
        result = await (await engine.start(main)).result(timeout=60)
        child = await engine.get_run(f"{result.run_id}.validate.1")
    assert result.status == "completed"
    assert result.output == {"total": 12, "dropped": 2}
    assert child.workflow == "data_validation" and child.parent_run_id == result.run_id
    assert child.output == {"rows": [3, 4, 5], "dropped": 2}


async def test_a_failed_child_run_fails_the_parent_task_after_its_retries(store):
    child = Workflow(name="always_fails")

    @child.task(id="boom")
    def boom(context):
        raise ValueError("bad batch")

    parent = Workflow(name="parent_of_failure")
    parent.sub_workflow(id="run_child", workflow=child, retries=1, retry_delay=0.01)

    async with Engine(store, [parent]) as engine:
        result = await (await engine.start(parent)).result(timeout=60)
        second = await engine.get_run(f"{result.run_id}.run_child.2")
    assert result.status == "failed"
    assert result.tasks["run_child"].attempts == 2
    assert "bad batch" in (result.tasks["run_child"].error or "")
    assert second.status == "failed"
