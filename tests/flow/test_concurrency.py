"""Concurrency keys: at most N running runs per key, the rest queued in order (memory, SQLite,
Kafka); what a queued run looks like; bad options fail when the workflow is defined."""

from __future__ import annotations

import asyncio

import pytest

from deerflow import Concurrency, Debounce, DefinitionError, Engine, RateLimit, Workflow
from deerflow.flow import FlowReleased, RunAdmitted, RunQueued
from tests.flow.apps import limited
from tests.flow.checks import (
    admitted_order,
    intervals,
    most_at_once,
    released,
    task_spans,
    until_admitted,
    until_status,
)
from tests.logs import history


async def test_no_key_ever_runs_more_than_its_limit(store):
    wf = limited(limit=2, seconds=0.2)
    async with Engine(store, [wf]) as engine:
        runs = [await engine.start(wf, params={"customer": f"c{i % 2}", "n": i}) for i in range(12)]
        results = await asyncio.gather(*(run.result(timeout=120) for run in runs))
        spans = await intervals(engine)
        ended = await released(engine)
        ran = await task_spans(engine)
    assert [r.status for r in results] == ["completed"] * 12
    assert [r.output for r in results] == list(range(12))
    assert sorted(spans) == ["limited/c0", "limited/c1"]
    for key, found in spans.items():
        assert len(found) == 6
        assert most_at_once(found) == 2, key  # never above the limit, and the limit is used
        for admitted, end, run_id in found:  # each body ran while its run held a slot
            assert admitted <= ran[run_id][0] <= ran[run_id][1] <= end
        # ... so the bodies of one key never ran more than two at once either
        assert most_at_once([(*ran[run_id], run_id) for _, _, run_id in found]) <= 2
    assert ended == {r.run_id for r in results}


async def test_queued_runs_start_in_the_order_they_were_requested(store):
    wf = limited("fifo", limit=1, seconds=0.05)
    async with Engine(store, [wf]) as engine:
        # the first holds the slot long enough for the others to queue on a loaded machine
        first = await engine.start(wf, params={"customer": "c", "n": 0, "seconds": 5.0})
        await until_admitted(engine, first)
        rest = [await engine.start(wf, params={"customer": "c", "n": i}) for i in range(1, 6)]
        await until_status(rest[-1], "queued")
        queued = await engine.list_runs(workflow="fifo", status="queued")
        results = await asyncio.gather(*(run.result(timeout=120) for run in [first, *rest]))
        order = await admitted_order(engine)
    assert sorted(r.run_id for r in queued) == sorted(r.run_id for r in rest)
    assert {r.status for r in queued} == {"queued"}
    assert [r.status for r in results] == ["completed"] * 6
    assert order == [r.run_id for r in results]


async def test_a_queued_run_shows_why_it_waits_and_a_cancelled_one_frees_its_place(store):
    wf = limited("held", limit=1, seconds=0.05)
    async with Engine(store, [wf]) as engine:
        first = await engine.start(wf, params={"customer": "c", "seconds": 5.0})
        await until_admitted(engine, first)
        waiting = await engine.start(wf, params={"customer": "c"})
        cancelled = await engine.start(wf, params={"customer": "c"})
        await until_status(cancelled, "queued")
        shown = await waiting.status()
        await engine.cancel(cancelled.run_id)
        outcome = await cancelled.result(timeout=60)
        results = await asyncio.gather(first.result(timeout=60), waiting.result(timeout=60))
        events = await history(engine, cancelled.run_id)
        counts = await engine.count_runs(workflow="held")
    assert shown.status == "queued"
    assert not shown.done
    assert shown.flow is not None
    assert (shown.flow["key"], shown.flow["status"]) == ("held/c", "queued")
    assert outcome.status == "cancelled"
    assert [r.status for r in results] == ["completed", "completed"]
    types = [e.type for e in events]
    assert "RunAdmitted" not in types  # it never held a slot
    assert types[-2:] == ["FlowReleased", "RunCancelled"]
    assert counts == {"completed": 2, "cancelled": 1}


async def test_a_run_without_the_key_fails_naming_it(store):
    wf = limited("nokey")
    async with Engine(store, [wf]) as engine:
        run = await engine.start(wf, params={"n": 1})
        result = await run.result(timeout=60)
    assert result.status == "failed"
    assert result.error == "flow control: the run has no 'params.customer' (the flow key)"


async def test_one_limit_for_all_runs_without_a_key(store):
    wf = Workflow("single", concurrency=Concurrency(limit=1))

    @wf.task(id="work")
    async def work(context):
        await asyncio.sleep(0.1)
        return "done"

    async with Engine(store, [wf]) as engine:
        runs = [await engine.start(wf) for _ in range(4)]
        results = await asyncio.gather(*(run.result(timeout=60) for run in runs))
        spans = await intervals(engine)
    assert [r.output for r in results] == ["done"] * 4
    assert list(spans) == ["single/"]
    assert most_at_once(spans["single/"]) == 1


async def test_every_flow_event_is_recorded_once_per_run(store):
    wf = limited("once", limit=1, seconds=0.05)
    async with Engine(store, [wf]) as engine:
        runs = [await engine.start(wf, params={"customer": "c"}) for _ in range(3)]
        await asyncio.gather(*(run.result(timeout=60) for run in runs))
        await asyncio.sleep(0.3)  # time for any repeat to land
        events = await history(engine)
    for cls in (RunQueued, RunAdmitted, FlowReleased):
        found = [e.run_id for e in events if isinstance(e, cls)]
        assert sorted(found) == sorted(r.run_id for r in runs), cls.__name__


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"concurrency": Concurrency(limit=0)}, "concurrency limit must be a whole number"),
        ({"concurrency": Concurrency(limit=-2)}, "concurrency limit must be a whole number"),
        ({"concurrency": Concurrency(limit=1.5)}, "concurrency limit must be a whole number"),  # type: ignore[arg-type]
        ({"concurrency": 3}, "concurrency takes Concurrency(limit=..., key=...), not int"),
        ({"concurrency": Concurrency(limit=2, key="customer")}, "must be a dotted path"),
        ({"concurrency": Concurrency(limit=2, key="params.")}, "must be a dotted path"),
        ({"rate_limit": RateLimit(limit=5, period="soon")}, "is not a duration"),
        ({"rate_limit": RateLimit(limit=5, period=0)}, "must be longer than 0"),
        ({"rate_limit": RateLimit(limit=0, period="1m")}, "rate_limit limit must be"),
        ({"rate_limit": RateLimit(limit=1, period="1m", on_excess="queue")}, "on_excess"),  # type: ignore[arg-type]
        (
            {
                "concurrency": Concurrency(limit=2, key="params.a"),
                "debounce": Debounce(period="1m", key="params.b"),
            },
            "concurrency and debounce must share one key",
        ),
    ],
)
def test_bad_options_fail_when_the_workflow_is_defined_naming_it(options, message):
    with pytest.raises(DefinitionError) as raised:
        Workflow("orders", **options)
    assert str(raised.value).startswith("workflow 'orders': ")
    assert message in str(raised.value)


def test_an_unknown_option_raises():
    with pytest.raises(TypeError, match="concurrency_limit"):
        Workflow("orders", concurrency_limit=3)  # type: ignore[call-arg]


async def test_a_run_of_higher_priority_passes_the_queue(store):
    wf = limited("urgent", limit=1, seconds=0.05)
    async with Engine(store, [wf]) as engine:
        # the first holds the slot long enough for the others to queue on a loaded machine
        first = await engine.start(wf, params={"customer": "c", "seconds": 4.0})
        await until_admitted(engine, first)
        low = [await engine.start(wf, params={"customer": "c"}) for _ in range(2)]
        high = await engine.start(wf, params={"customer": "c"}, priority=5)
        await until_status(high, "queued")
        results = await asyncio.gather(*(r.result(timeout=60) for r in [first, *low, high]))
        order = await admitted_order(engine)
    assert [r.status for r in results] == ["completed"] * 4
    assert order == [first.run_id, high.run_id, low[0].run_id, low[1].run_id]


async def test_a_priority_must_be_a_whole_number(store):
    wf = limited("typed")
    async with Engine(store, [wf]) as engine:
        with pytest.raises(TypeError, match="priority must be an int, not str"):
            await engine.start(wf, params={"customer": "c"}, priority="high")  # type: ignore[call-overload]
