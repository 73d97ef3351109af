"""Rate limits: at most N starts per period per key, the rest delayed on a durable timer or
dropped (memory, SQLite, Kafka)."""

from __future__ import annotations

import asyncio

from deerflow import Engine
from deerflow.core import history as h
from deerflow.flow import RunAdmitted, RunDropped
from tests.flow.apps import rated
from tests.logs import history


async def test_runs_over_the_rate_start_later_on_a_durable_timer(store):
    wf = rated(limit=2, period="1s")
    async with Engine(store, [wf]) as engine:
        runs = [await engine.start(wf, params={"customer": "c", "n": i}) for i in range(5)]
        other = await engine.start(wf, params={"customer": "d", "n": 9})
        results = await asyncio.gather(*(run.result(timeout=60) for run in [*runs, other]))
        events = await history(engine)
    assert [r.output for r in results] == [0, 1, 2, 3, 4, 9]
    ids = {r.run_id for r in results[:5]}
    admitted = {e.run_id: e for e in events if isinstance(e, RunAdmitted) and e.run_id in ids}
    starts = sorted(e.not_before or e.ts for e in admitted.values())
    # No window of a period holds more than the limit's starts ...
    assert all(later - earlier >= 1.0 for earlier, later in zip(starts, starts[2:], strict=False))
    # ... three of the five ran no earlier than their start, waiting on the run's own timer
    # (unless their admission reached them late enough: a slow broker).
    delayed = [e for e in admitted.values() if e.not_before is not None]
    assert len(delayed) == 3
    timed = 0
    for e in delayed:
        own = [x for x in events if x.run_id == e.run_id]
        began = [x for x in own if isinstance(x, h.TaskCompleted)]
        assert e.not_before is not None and began[0].started_at is not None
        assert began[0].started_at >= e.not_before
        timers = [x.timer_id for x in own if isinstance(x, h.TimerStarted | h.TimerFired)]
        assert timers in ([], ["flow:delay", "flow:delay"])
        timed += bool(timers)
    assert timed >= 1
    # Another key has its own window.
    other_admitted = [e for e in events if isinstance(e, RunAdmitted) and e.run_id == other.run_id]
    assert other_admitted[0].not_before is None


async def test_runs_over_the_rate_are_dropped_with_the_reason_in_their_history(store):
    wf = rated("dropping", limit=2, period="1h", on_excess="drop")
    async with Engine(store, [wf]) as engine:
        runs = [await engine.start(wf, params={"customer": "c", "n": i}) for i in range(5)]
        results = await asyncio.gather(*(run.result(timeout=60) for run in runs))
        dropped = await engine.list_runs(workflow="dropping", status="dropped")
        counts = await engine.count_runs(workflow="dropping")
        events = await history(engine)
    assert sorted(r.status for r in results) == ["completed"] * 2 + ["dropped"] * 3
    assert counts == {"completed": 2, "dropped": 3}
    assert sorted(r.run_id for r in dropped) == sorted(
        r.run_id for r in results if r.status == "dropped"
    )
    reasons = {e.reason for e in events if isinstance(e, RunDropped)}
    assert reasons == {"rate limit of dropping/c: 2 runs per 3600s exceeded"}
    for result in results:
        if result.status == "dropped":
            assert result.error == "rate limit of dropping/c: 2 runs per 3600s exceeded"
            assert result.tasks["work"].status == "pending"  # nothing of it ran
