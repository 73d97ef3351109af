"""Guarantee: an append that times out after it was written (ambiguous) changes no outcome.

Every part of the engine appends through a :class:`~tests.reliability.faults.FaultyLog` that
raises ``EventStoreError`` after a share of its appends were written: the client starting runs
(which retries with the same run id, as a user does), the orchestrator, the worker. Criteria:
every run completes with the right output, the history checker finds one request and one end
per run and no gaps, and the sink holds each effect once.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from deerflow import Engine, RunHandle, Workflow
from deerflow.cli._loader import load_module_workflows
from deerflow.errors import EventStoreError
from deerflow.eventstore import open_log
from tests.engine.apps.sink import Sink
from tests.reliability.conftest import APPS
from tests.reliability.faults import FaultyLog
from tests.reliability.history_checker import check_log


async def start_until_acknowledged(engine: Engine, wf: Workflow, n: int) -> RunHandle:
    """Start run ``n``, retrying on errors with the same run id (idempotent start)."""
    while True:
        try:
            return await engine.start(wf, params={"n": n}, run_id=f"amb-{n:05d}")
        except EventStoreError:
            continue


async def runs_under_ambiguous_appends(
    url: str, sink: Sink, rng: random.Random, runs: int, share: float
) -> None:
    workflows, wf = load_module_workflows(str(APPS / "steps_app.py"))
    assert wf is not None
    log = FaultyLog(open_log(url), ambiguous=share, rng=rng)
    async with Engine(log, workflows) as engine:
        handles = [await start_until_acknowledged(engine, wf, n) for n in range(runs)]
        results = [await h.result(timeout=120) for h in handles]
        history = await check_log(log.inner, engine.topics.history, {wf.name: wf})
    print(
        f"{url.split(':')[0]}: {log.failed} of {log.appends} appends failed ambiguously; "
        f"{history.summary()}; {sink.effects()} effects, {sink.executions()} executions"
    )
    assert log.failed > 0, "no append failed: the test tested nothing"
    assert [r.output for r in results] == [{"n": n + 2} for n in range(runs)]
    history.assert_ok([h.run_id for h in handles], exact=True)
    assert sink.effects() == 3 * runs


@pytest.fixture(params=["memory", "sqlite", pytest.param("kafka", marks=pytest.mark.kafka)])
def url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "memory":
        return f"memory://{tmp_path.name}"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'events.db'}"
    return str(request.getfixturevalue("kafka_url"))


@pytest.mark.timeout(180)
async def test_ambiguous_appends_change_no_outcome(url, sink, rng):
    await runs_under_ambiguous_appends(url, sink, rng, runs=100, share=0.02)


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_full_size_one_percent_ambiguous_appends_over_1000_runs(url, sink, rng):
    await runs_under_ambiguous_appends(url, sink, rng, runs=1000, share=0.01)


class LoseTheEnding(FaultyLog):
    """Fails, without writing it, the first append that carries a run's ending."""

    def __init__(self, inner) -> None:
        super().__init__(inner)
        self.lost = asyncio.Event()

    async def append(self, messages):
        if not self.lost.is_set() and any(b'"RunCompleted"' in m.value for m in messages):
            self.lost.set()
            raise EventStoreError("the broker is gone (nothing written)", retriable=True)
        return await self.inner.append(messages)


async def test_a_result_is_not_answered_before_the_runs_ending_is_in_the_log(tmp_path):
    wf = Workflow(name="ends_once")

    @wf.task(id="only")
    def only(context):
        return 1

    log = LoseTheEnding(open_log(f"sqlite:///{tmp_path / 'lost.db'}"))
    async with Engine(log, [wf]) as engine:
        handle = await engine.start(wf)
        await asyncio.wait_for(log.lost.wait(), 30)
        # After the orchestrator noticed the failure, before it rebuilt from the log (~1 s):
        # its state says completed, the log does not.
        await asyncio.sleep(0.7)
        result = await handle.result(timeout=30)
        history = await check_log(log.inner, engine.topics.history, {wf.name: wf})
    assert result.status == "completed"
    history.assert_ok([handle.run_id], exact=True)
