"""Guarantee: a value nested too deeply to store is refused where it enters, never half-written.

Before the bound, such values were encoded into the log and then could not be read back (the
pydantic JSON parser stops near 200 levels, the encoder near 254): the run's outcome was
skipped as undecodable and the run never moved again. Now task outputs, run params and input
deeper than ``MAX_DEPTH`` levels are refused up front: the task fails for good, the start
raises.
"""

from __future__ import annotations

from typing import Any

import pytest

from deerflow import Engine, Workflow
from deerflow._codec import MAX_DEPTH
from tests.services import unique_name


def nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


def deep_output_workflow() -> Workflow:
    wf = Workflow(name="deep")

    @wf.task(id="make")
    def make(context: Any) -> Any:
        return nested(context.params["depth"])

    @wf.task(id="use", depends_on=["make"])
    def use(context: Any) -> int:
        return len(context.tasks["make"].output)

    return wf


@pytest.mark.parametrize("depth", [MAX_DEPTH, MAX_DEPTH + 1, 199, 230])
async def test_a_task_output_nested_too_deeply_fails_the_task_instead_of_hanging(depth):
    wf = deep_output_workflow()
    async with Engine(f"memory://{unique_name('deep')}", [wf]) as engine:
        run = await (await engine.start(wf, params={"depth": depth})).result(timeout=30)
    if depth <= MAX_DEPTH:
        assert run.status == "completed"
    else:
        assert run.status == "failed"
        assert run.tasks["make"].error_type == "OutputNotSerializable"
        assert run.tasks["make"].attempts == 1  # not retried: it would fail again
        assert f"deeper than {MAX_DEPTH} levels" in (run.tasks["make"].error or "")


async def test_run_params_or_input_nested_too_deeply_are_refused_at_start():
    wf = deep_output_workflow()
    async with Engine(f"memory://{unique_name('deep')}", [wf]) as engine:
        with pytest.raises(TypeError, match="deeper than"):
            await engine.start(wf, params={"depth": 1, "x": nested(199)})
        with pytest.raises(TypeError, match="deeper than"):
            await engine.start(wf, params={"depth": 1}, input=nested(150))
        assert await engine.list_runs() == []
