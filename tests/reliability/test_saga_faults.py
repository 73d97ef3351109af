"""Guarantee: a failed saga undoes exactly its completed steps, in reverse, each effect once.

Runs of an order saga (reserve -> charge -> ship) fail at a random step; compensations fail
transiently (once) or permanently, and in one test the only worker is SIGKILLed during the
rollbacks. Criteria, from the history checker and the sink: each run ends as expected
(``completed``, ``compensated``, or ``compensation_failed`` naming the compensation); only
completed steps are compensated; compensations complete in reverse step order; each effect
(step or compensation) is in the sink exactly once.
"""

from __future__ import annotations

import asyncio
import random
import signal
from dataclasses import dataclass, field
from typing import Any

import pytest

from deerflow import Engine
from deerflow.cli._loader import load_module_workflows
from tests.engine.apps.sink import Sink
from tests.processes import Workers
from tests.reliability.conftest import APPS
from tests.reliability.history_checker import HistoryCheck, check_log
from tests.reliability.support import effects_by_run, eventually, executions_by_key

APP = APPS / "saga_app.py"
COMPENSATIONS = {"release_inventory", "refund_payment"}


@dataclass(frozen=True)
class Expect:
    """What a scenario must end as: status, effects, compensations in completion order."""

    status: str
    effects: frozenset[str]
    undone: tuple[str, ...] = ()
    broken: str | None = None
    retried: dict[str, int] = field(default_factory=dict)


FULL = frozenset({"reserve_inventory", "charge_payment"})
SCENARIOS: list[tuple[dict[str, Any], Expect]] = [
    ({}, Expect("completed", FULL | {"create_shipment"})),
    ({"fail_at": 1}, Expect("compensated", frozenset())),
    (
        {"fail_at": 2},
        Expect(
            "compensated",
            frozenset({"reserve_inventory", "release_inventory"}),
            ("release_inventory",),
        ),
    ),
    (
        {"fail_at": 3},
        Expect("compensated", FULL | COMPENSATIONS, ("refund_payment", "release_inventory")),
    ),
    (
        {"fail_at": 3, "refund": "flaky"},
        Expect(
            "compensated",
            FULL | COMPENSATIONS,
            ("refund_payment", "release_inventory"),
            retried={"refund_payment": 2},
        ),
    ),
    (
        {"fail_at": 3, "release": "flaky"},
        Expect(
            "compensated",
            FULL | COMPENSATIONS,
            ("refund_payment", "release_inventory"),
            retried={"release_inventory": 2},
        ),
    ),
    (
        {"fail_at": 3, "refund": "broken"},
        Expect(
            "compensation_failed", FULL, (), broken="refund_payment", retried={"refund_payment": 3}
        ),
    ),
    (
        {"fail_at": 2, "release": "broken"},
        Expect(
            "compensation_failed",
            frozenset({"reserve_inventory"}),
            (),
            broken="release_inventory",
            retried={"release_inventory": 3},
        ),
    ),
]


def assert_rollbacks(
    history: HistoryCheck, sink: Sink, expected: dict[str, Expect], *, crashed: bool = False
) -> None:
    """Check every run against its scenario. Without crashes no body ran twice; with them a
    body may have (at-least-once), but its effect is in the sink once, by its key."""
    history.assert_ok(expected, status=None, exact=True)
    effects = effects_by_run(sink)
    repeated = {k: n for k, n in executions_by_key(sink).items() if n != 1}
    assert crashed or not repeated, f"bodies executed more than once: {repeated}"
    for run_id, want in expected.items():
        run = history.runs[run_id]
        assert run.state is not None
        assert run.status == want.status, (run_id, want)
        assert effects.get(run_id, set()) == want.effects, (run_id, want)
        undone = tuple(t for t in run.completed if t in COMPENSATIONS)
        assert undone == want.undone, f"{run_id}: compensations completed as {undone}"
        step_of = {"release_inventory": "reserve_inventory", "refund_payment": "charge_payment"}
        for comp in COMPENSATIONS & set(run.scheduled):
            assert run.state.tasks[step_of[comp]].status == "completed", (
                f"{run_id}: {comp} ran although its step never completed"
            )
        if want.broken:
            assert run.state.error and f"compensation {want.broken!r} failed" in run.state.error
            assert "release_inventory" not in run.scheduled or want.broken == "release_inventory"
        for task_id, attempts in want.retried.items():
            assert run.state.tasks[task_id].attempts == attempts, (run_id, task_id)


@pytest.fixture(params=["memory", "sqlite"])
def url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "memory":
        return f"memory://{tmp_path.name}"
    return f"sqlite:///{tmp_path / 'events.db'}"


async def test_random_failures_and_compensation_faults_roll_back_exactly(url, sink, rng):
    workflows, wf = load_module_workflows(str(APP))
    assert wf is not None
    expected: dict[str, Expect] = {}
    async with Engine(url, workflows) as engine:
        for n in range(40):
            params, want = SCENARIOS[n] if n < len(SCENARIOS) else rng.choice(SCENARIOS)
            handle = await engine.start(wf, params=params, run_id=f"saga-{n:03d}")
            expected[handle.run_id] = want
        for run_id in expected:
            await engine.wait(run_id, timeout=60)
        history = await check_log(engine.log, engine.topics.history, {wf.name: wf})
    print(history.summary())
    assert_rollbacks(history, sink, expected)


async def kill_during_rollbacks(
    pool: Workers, client: Engine, sink: Sink, rng: random.Random, kills: int, runs: int
) -> list[int]:
    """Kill the worker ``kills`` times as rollbacks progress; return compensations running at
    each kill (as the history shows them)."""
    running = []
    for k in range(kills):
        target = (k + 1) * runs // (kills + 2)

        async def rolled_back(target: int = target) -> bool:
            return sum("refund_payment" in e for e in effects_by_run(sink).values()) >= target

        await eventually(rolled_back, 60, f"{target} refunds")
        victim = next(p for p in pool.procs if p.poll() is None)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        await client.index.sync()
        running.append(
            sum(
                1
                for s in client.index.runs.values()
                for t in COMPENSATIONS
                if t in s.tasks and s.tasks[t].status == "scheduled"
            )
        )
        await asyncio.sleep(rng.uniform(0.1, 0.5))
        pool.start(APP, concurrency=8)
    return running


@pytest.mark.timeout(180)
async def test_a_worker_killed_during_rollbacks_still_undoes_each_step_once(sqlite_pool, sink, rng):
    workflows, wf = load_module_workflows(str(APP))
    assert wf is not None
    sqlite_pool.env["COMP_SLEEP"] = "0.2"  # long enough for kills to land inside them
    sqlite_pool.start(APP, concurrency=8)
    rollback = ({"fail_at": 3}, SCENARIOS[3][1])
    flaky = ({"fail_at": 3, "refund": "flaky"}, SCENARIOS[4][1])
    expected: dict[str, Expect] = {}
    async with Engine(sqlite_pool.store, workflows, orchestrate=False, work=False) as client:
        for n in range(24):
            params, want = rng.choice([rollback, flaky])
            handle = await client.start(wf, params=params, run_id=f"saga-kill-{n:03d}")
            expected[handle.run_id] = want
        running = await kill_during_rollbacks(
            sqlite_pool, client, sink, rng, kills=2, runs=len(expected)
        )
        for run_id in expected:
            await client.wait(run_id, timeout=90)
        history = await check_log(client.log, client.topics.history, {wf.name: wf})
    again = sum(n - 1 for n in executions_by_key(sink).values())
    print(
        history.summary(),
        f"compensations running at the kills: {running}, {again} bodies ran again",
    )
    assert all(n > 0 for n in running), f"a kill landed outside any rollback: {running}"
    assert_rollbacks(history, sink, expected, crashed=True)
