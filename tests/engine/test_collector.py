"""The garbage collector's pace while an engine runs (deerflow.runtime._collector)."""

from __future__ import annotations

import gc

from deerflow import Engine, Workflow

wf = Workflow(name="collector_pace")


@wf.task(id="only")
async def only(context):
    return gc.get_threshold()


async def test_a_running_engine_collects_less_often_and_the_default_comes_back_when_it_stops():
    assert gc.get_threshold() == (700, 10, 10)  # Python's default, as the test process has it
    async with Engine("memory://collector-pace", [wf]) as engine:
        result = await (await engine.start(wf)).result(timeout=30)
        async with Engine("memory://collector-pace-2", [wf]):
            pass  # a second engine stopping leaves the first one's pace
        assert gc.get_threshold() == (50_000, 20, 10)
    assert result.output == [50_000, 20, 10]
    assert gc.get_threshold() == (700, 10, 10)


async def test_thresholds_the_process_chose_itself_are_kept():
    gc.set_threshold(1234, 5, 5)
    try:
        async with Engine("memory://collector-own", [wf]) as engine:
            result = await (await engine.start(wf)).result(timeout=30)
        assert result.output == [1234, 5, 5]
        assert gc.get_threshold() == (1234, 5, 5)
    finally:
        gc.set_threshold(700, 10, 10)
