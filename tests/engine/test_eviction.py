"""An owner holds at most ``max_held_runs`` run states; idle runs past it wait evicted.

Runs waiting on signals, events and sleeps are evicted from memory and loaded back by the
record that concerns them: each resumes once with the right output, a restart and a takeover
lose none, and the timers of evicted runs fire.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

import pytest

from deerflow import Engine, RunHandle, Workflow
from deerflow.choreography import publish_event_async
from deerflow.core import history as h
from deerflow.errors import DeerflowError
from deerflow.matching import EventMatched
from deerflow.observability.metrics import EngineMetrics
from deerflow.runtime._hotset import EVICT_SLICE, poll_size
from deerflow.waiting import WaitEnded
from tests.logs import history, until
from tests.matching.waits import until_waiting
from tests.waiting.test_sleep_and_signals import sleeper

LIMIT = 5


def signalled(executions: Counter[str]) -> Workflow:
    """Waits for the signal ``go``; then says which run got which signal."""
    wf = Workflow(name="signalled")
    wf.wait_for_signal(id="go", name="go")

    @wf.task(id="done", depends_on=["go"])
    def done(context):
        executions[context.run_id] += 1
        return f"{context.params['n']}:{context.tasks['go'].output['n']}"

    return wf


def evented(executions: Counter[str]) -> Workflow:
    """Waits for the ``Approved`` event of its ``n``; then says who approved it."""
    wf = Workflow(name="evented")
    wf.wait_for_event(id="approval", event="Approved", match={"data.n": "params.n"})

    @wf.task(id="done", depends_on=["approval"])
    def done(context):
        executions[context.run_id] += 1
        return f"{context.params['n']}:{context.tasks['approval'].output['data']['by']}"

    return wf


def settled(engine: Engine, evicted: int) -> Callable[[], bool]:
    """At least ``evicted`` runs evicted, and no more than the limit held."""
    orchestrator = engine.orchestrator
    assert orchestrator is not None
    return lambda: orchestrator.evicted_runs >= evicted and orchestrator.held_runs <= LIMIT


async def start_all(engine: Engine, wf: Workflow, first: int, count: int) -> list[RunHandle]:
    return list(
        await asyncio.gather(
            *(engine.start(wf, params={"n": n}) for n in range(first, first + count))
        )
    )


async def resume(engine: Engine, run: RunHandle, wf: str, n: int) -> None:
    if wf == "signalled":
        await engine.signal(run.run_id, "go", {"n": n})
    else:
        await publish_event_async("Approved", {"n": n, "by": f"by-{n}"}, store=engine)


async def test_two_hundred_waiting_runs_past_the_limit_each_resume_once(store):
    executions: Counter[str] = Counter()
    signals, events = signalled(executions), evented(executions)
    async with Engine(store, [signals, events], max_held_runs=LIMIT) as engine:
        by_signal = await start_all(engine, signals, 0, 100)
        by_event = await start_all(engine, events, 100, 100)
        await until_waiting(engine, *by_event, timeout=120)
        await until(settled(engine, 195), timeout=60)
        assert engine.orchestrator is not None
        # Resumed two at a time: the runs in flight stay under the limit with the idle ones.
        runs = [(r, "signalled", n) for n, r in enumerate(by_signal)]
        runs += [(r, "evented", 100 + n) for n, r in enumerate(by_event)]
        results = []
        for i in range(0, len(runs), 2):
            pair = runs[i : i + 2]
            await asyncio.gather(*(resume(engine, run, wf, n) for run, wf, n in pair))
            results += await asyncio.gather(*(run.result(timeout=60) for run, _, _ in pair))
        peak = engine.orchestrator.peak_held_runs
        left = engine.orchestrator.evicted_runs  # every run ended: none is kept evicted
        events_of = await history(engine)
    assert [r.status for r in results] == ["completed"] * 200, [r.error for r in results][:3]
    assert [r.output for r in results[:100]] == [f"{n}:{n}" for n in range(100)]
    assert [r.output for r in results[100:]] == [f"{n}:by-{n}" for n in range(100, 200)]
    assert set(executions.values()) == {1} and len(executions) == 200
    resumed = Counter(e.run_id for e in events_of if isinstance(e, WaitEnded | EventMatched))
    assert set(resumed.values()) == {1} and len(resumed) == 200
    assert peak <= LIMIT and left == 0


async def test_idle_runs_leave_in_slices_and_a_round_holds_at_most_twice_the_limit(store):
    limit = 300
    wf = signalled(Counter())
    async with Engine(store, [wf], max_held_runs=limit) as owner:
        orchestrator = owner.orchestrator
        assert orchestrator is not None
        # Loaded first: a load on assignment folds all it finds at once (not bounded here).
        await asyncio.wait_for(orchestrator.settled.wait(), 60)
        # Started by a process that owns nothing: the owner reads them a poll at a time.
        async with Engine(store, [wf], orchestrate=False, work=False, services=False) as client:
            runs = await start_all(client, wf, 0, 1500)
        await until(
            lambda: orchestrator.evicted_runs >= 1500 - limit and orchestrator.held_runs <= limit,
            timeout=120,
        )
        in_round, largest = orchestrator.peak_held_in_round, orchestrator.largest_eviction
        await owner.signal(runs[-1].run_id, "go", {"n": 1499})
        last = await owner.wait(runs[-1].run_id, timeout=60)
    assert orchestrator.peak_held_runs <= limit  # at the end of every round
    assert in_round <= limit + poll_size(limit) == 2 * limit  # within one
    assert 0 < largest <= EVICT_SLICE  # the loop had a turn between slices
    assert last.output == "1499:1499"


async def test_timers_of_evicted_runs_fire_on_time(store):
    wf = sleeper(4.0)
    async with Engine(store, [wf], max_held_runs=LIMIT) as engine:
        runs = await start_all(engine, wf, 0, 30)
        await until(settled(engine, 25), timeout=4)  # evicted while they sleep
        results = await asyncio.gather(*(run.result(timeout=60) for run in runs))
        events_of = await history(engine)
    assert [r.status for r in results] == ["completed"] * 30
    assert all(r.tasks["after"].output - r.tasks["before"].output >= 4.0 for r in results)
    for kind in (h.TimerFired, WaitEnded):
        once = Counter(e.run_id for e in events_of if isinstance(e, kind))
        assert set(once.values()) == {1} and len(once) == 30


async def test_a_restart_loses_no_evicted_run(store):
    executions: Counter[str] = Counter()
    wf = signalled(executions)
    # Snapshots every few records: the new owner loads evicted runs from them, not the log.
    async with Engine(store, [wf], max_held_runs=LIMIT, snapshot_every=10) as engine:
        runs = await start_all(engine, wf, 0, 40)
        await until(settled(engine, 35), timeout=60)
    async with Engine(store, [wf], max_held_runs=LIMIT, snapshot_every=10) as engine:
        for n, run in enumerate(runs):
            await engine.signal(run.run_id, "go", {"n": n})
        results = await asyncio.gather(*(engine.wait(run.run_id, timeout=60) for run in runs))
        await until(settled(engine, 0), timeout=30)
    assert [r.output for r in results] == [f"{n}:{n}" for n in range(40)]
    assert set(executions.values()) == {1} and len(executions) == 40


async def test_a_takeover_loses_no_evicted_run(store):
    executions: Counter[str] = Counter()
    wf = signalled(executions)
    first = Engine(store, [wf], max_held_runs=LIMIT, snapshot_every=10)
    await first.start()
    second: Engine | None = None
    try:
        runs = await start_all(first, wf, 0, 40)
        await until(settled(first, 35), timeout=60)
        # A second member joins: partitions move, with the runs evicted in them.
        second = Engine(store, [wf], max_held_runs=LIMIT, snapshot_every=10)
        await second.start()
        await until(
            lambda: bool(second and second.orchestrator and second.orchestrator.settled.is_set())
        )
        for n, run in enumerate(runs[:20]):
            await run.signal("go", {"n": n})
        early = await asyncio.gather(*(run.result(timeout=60) for run in runs[:20]))
        # The first stops: the second takes the rest over.
        await first.stop()
        for n, run in enumerate(runs[20:], start=20):
            await second.signal(run.run_id, "go", {"n": n})
        late = await asyncio.gather(*(second.wait(run.run_id, timeout=60) for run in runs[20:]))
    finally:
        await first.stop()
        if second is not None:
            await second.stop()
    assert [r.output for r in early + late] == [f"{n}:{n}" for n in range(40)]
    assert set(executions.values()) == {1} and len(executions) == 40


async def test_cancelling_evicted_runs_ends_them_and_frees_what_they_kept(store):
    wf = signalled(Counter())
    async with Engine(store, [wf], max_held_runs=LIMIT) as engine:
        runs = await start_all(engine, wf, 0, 20)
        await until(settled(engine, 15), timeout=60)
        for run in runs:
            await run.cancel("not needed")
        results = await asyncio.gather(*(run.result(timeout=60) for run in runs))
        assert engine.orchestrator is not None
        await until(
            lambda: engine.orchestrator is not None and engine.orchestrator.evicted_runs == 0
        )
    assert [r.status for r in results] == ["cancelled"] * 20


async def test_held_and_evicted_runs_are_gauges(store):
    wf = signalled(Counter())
    async with Engine(store, [wf], max_held_runs=LIMIT) as engine:
        await start_all(engine, wf, 0, 12)
        await until(settled(engine, 7), timeout=60)
        text = EngineMetrics(engine).render().decode()
    assert f"deerflow_held_runs {LIMIT}.0" in text
    assert "deerflow_evicted_runs 7.0" in text


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "10"])
def test_a_bad_max_held_runs_is_refused_naming_it(bad):
    with pytest.raises(DeerflowError, match="max_held_runs"):
        Engine("memory://held", max_held_runs=bad)


def test_a_bad_max_held_runs_from_the_environment_is_refused_naming_it(monkeypatch):
    monkeypatch.setenv("DEERFLOW_MAX_HELD_RUNS", "many")
    with pytest.raises(DeerflowError, match="DEERFLOW_MAX_HELD_RUNS"):
        Engine("memory://held-env")
