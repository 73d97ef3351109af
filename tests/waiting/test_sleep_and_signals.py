"""Durable sleeps and signals on every log: what a run's waiting nodes give, and when.

A waiting node holds no worker slot, its deadline is a timer of the run's history (so a new
engine on the same log goes on where the old one stopped), and each signal is taken once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Literal

import pytest

from deerflow import DefinitionError, Engine, RunEnded, Workflow
from deerflow.core import history as h
from deerflow.errors import InvalidSignal, RunNotFound
from deerflow.waiting import MAX_PENDING, SignalReceived, WaitEnded, WaitStarted, pending_signals
from deerflow.web._runs import request_retry
from tests.engine.test_custom_kind import run_history
from tests.engine.test_snapshots import loads


def count(history: list[h.HistoryEvent], cls: type[h.HistoryEvent]) -> int:
    return sum(isinstance(e, cls) for e in history)


async def waiting(engine: Engine, run_id: str, task_id: str) -> None:
    """Until ``task_id`` of ``run_id`` waits, as the run index reads the history."""
    state = await engine.index.wait(
        run_id,
        lambda s: s.tasks.get(task_id) is not None and s.tasks[task_id].status == "waiting",
        30,
    )
    assert state is not None, f"{task_id} never waited"


def sleeper(seconds: float = 1.0) -> Workflow:
    wf = Workflow(name="sleeper", max_parallel=1)

    @wf.task(id="before")
    def before(context):
        return time.time()

    wf.sleep(id="cool_down", duration=seconds, depends_on=["before"])

    @wf.task(id="after", depends_on=["cool_down"])
    def after(context):
        return time.time()

    # Independent of the sleep: runs while it sleeps, although one task at most runs at once.
    @wf.task(id="beside", depends_on=["before"])
    def beside(context):
        return time.time()

    return wf


async def test_a_sleep_holds_no_slot_and_the_run_goes_on_after_it(store):
    wf = sleeper(1.5)
    async with Engine(store, [wf]) as engine:
        result = await (await engine.start(wf)).result(timeout=60)
        history = await run_history(engine, result.run_id)
    assert result.status == "completed", result.error
    tasks = result.tasks
    assert tasks["after"].output - tasks["before"].output >= 1.5
    assert tasks["beside"].output - tasks["before"].output < 1.5  # not behind the sleep
    assert tasks["cool_down"].status == "completed" and tasks["cool_down"].output is None
    # Decided by the run's owner from a timer: no worker ran it.
    assert not any(isinstance(e, h.TaskCompleted) and e.task_id == "cool_down" for e in history)
    assert count(history, WaitStarted) == count(history, WaitEnded) == 1
    assert count(history, h.TimerFired) == 1


async def test_a_sleep_survives_a_restart_and_wakes_once(store):
    wf = sleeper(2.0)
    async with Engine(store, [wf]) as engine:
        handle = await engine.start(wf)
        await waiting(engine, handle.run_id, "cool_down")
    # Gone while it sleeps; a new engine on the same log wakes it, once.
    async with Engine(store, [wf]) as engine:
        result = await engine.wait(handle.run_id, timeout=60)
        history = await run_history(engine, handle.run_id)
    assert result.status == "completed", result.error
    assert result.tasks["after"].output - result.tasks["before"].output >= 2.0
    assert count(history, WaitEnded) == 1
    assert count(history, h.TimerFired) == 1


async def test_a_sleep_until_a_time_the_run_computes(store):
    wf = Workflow(name="until")

    @wf.task(id="plan")
    def plan(context):
        return (datetime.now(UTC) + timedelta(seconds=float(context.params["wait"]))).isoformat()

    wf.sleep(
        id="until_then",
        until=lambda context: datetime.fromisoformat(context.tasks["plan"].output),
        depends_on=["plan"],
    )

    @wf.task(id="done", depends_on=["until_then"])
    def done(context):
        return datetime.now(UTC).isoformat()

    async with Engine(store, [wf]) as engine:
        result = await (await engine.start(wf, params={"wait": 1})).result(timeout=60)
    assert result.status == "completed", result.error
    assert result.output >= result.tasks["plan"].output


async def test_an_until_that_fails_fails_its_node_with_the_reason(store):
    wf = Workflow(name="bad_until")
    wf.sleep(id="nap", until=lambda context: "tomorrow")  # type: ignore[arg-type,return-value]
    async with Engine(store, [wf]) as engine:
        result = await (await engine.start(wf)).result(timeout=60)
    assert result.status == "failed"
    assert result.tasks["nap"].error == "TypeError: until must return a datetime, got str"


def approval(
    timeout: float | None = None, on_timeout: Literal["none", "fail"] = "none"
) -> Workflow:
    wf = Workflow(name="approval")

    @wf.task(id="request")
    def request(context):
        return "requested"

    wf.wait_for_signal(
        id="go", name="approve", timeout=timeout, on_timeout=on_timeout, depends_on=["request"]
    )

    @wf.task(id="report", depends_on=["go"])
    def report(context):
        return {"approved": context.tasks["go"].output}

    return wf


async def test_a_signal_resumes_its_waiting_node_with_its_data(store):
    wf = approval()
    async with Engine(store, [wf]) as engine:
        handle = await engine.start(wf)
        await waiting(engine, handle.run_id, "go")
        await engine.signal(handle.run_id, "other", {"by": "nobody"})  # not what it waits for
        await handle.signal("approve", {"by": "ann"})
        result = await handle.result(timeout=60)
    assert result.status == "completed", result.error
    assert result.output == {"approved": {"by": "ann"}}


async def test_a_signal_sent_before_its_node_is_reached_is_kept_for_it(store):
    wf = Workflow(name="early")
    wf.sleep(id="first", duration=1)
    wf.wait_for_signal(id="go", name="approve", depends_on=["first"])
    async with Engine(store, [wf]) as engine:
        handle = await engine.start(wf)
        await engine.signal(handle.run_id, "approve", "yes")
        result = await handle.result(timeout=60)
    assert result.status == "completed", result.error
    assert result.output == "yes"


async def test_a_signal_sent_twice_is_taken_once(store):
    wf = Workflow(name="twice")
    wf.wait_for_signal(id="first", name="approve")
    wf.wait_for_signal(id="second", name="approve", timeout=1.5, depends_on=["first"])
    async with Engine(store, [wf]) as engine:
        handle = await engine.start(wf)
        for _ in range(2):  # a retried request: the same signal id
            await engine.signal(handle.run_id, "approve", "once", signal_id="req-1")
        result = await handle.result(timeout=60)
        history = await run_history(engine, handle.run_id)
    assert result.status == "completed", result.error
    assert result.tasks["first"].output == "once"
    assert result.tasks["second"].output is None  # timed out: nothing left to take
    assert [e.signal_id for e in history if isinstance(e, WaitEnded)] == ["req-1", None]
    assert count(history, SignalReceived) == 2  # both written, one folded


async def test_two_signals_go_to_two_nodes_one_each(store):
    wf = Workflow(name="two_of_them")
    wf.wait_for_signal(id="a", name="vote")
    wf.wait_for_signal(id="b", name="vote")
    async with Engine(store, [wf]) as engine:
        handle = await engine.start(wf)
        await engine.signal(handle.run_id, "vote", 1)
        await engine.signal(handle.run_id, "vote", 2)
        result = await handle.result(timeout=60)
    assert result.status == "completed", result.error
    assert sorted([result.tasks["a"].output, result.tasks["b"].output]) == [1, 2]


async def test_a_timeout_gives_none_or_fails_the_node(store):
    quiet, strict = approval(timeout=1), approval(timeout=1, on_timeout="fail")
    strict.name = "strict_approval"
    async with Engine(store, [quiet, strict]) as engine:
        first = await (await engine.start(quiet)).result(timeout=60)
        second = await (await engine.start(strict)).result(timeout=60)
    assert first.status == "completed" and first.output == {"approved": None}
    assert second.status == "failed"
    assert second.tasks["go"].error == "no signal 'approve' within 1s"
    assert second.tasks["report"].status == "skipped"


async def test_a_timeout_survives_a_restart(store):
    wf = approval(timeout=2, on_timeout="fail")
    async with Engine(store, [wf]) as engine:
        handle = await engine.start(wf)
        await waiting(engine, handle.run_id, "go")
        started = time.time()
    async with Engine(store, [wf]) as engine:
        result = await engine.wait(handle.run_id, timeout=60)
        history = await run_history(engine, handle.run_id)
    assert result.status == "failed"
    assert result.tasks["go"].error == "no signal 'approve' within 2s"
    assert time.time() - started < 30
    assert count(history, WaitEnded) == 1


async def test_a_signal_to_an_ended_or_unknown_run_is_refused(store):
    wf = approval(timeout=0.5)
    async with Engine(store, [wf]) as engine:
        result = await (await engine.start(wf)).result(timeout=60)
        with pytest.raises(RunEnded, match=r"has ended \(completed\): it takes no more signals"):
            await engine.signal(result.run_id, "approve", 1)
        with pytest.raises(RunNotFound):
            await engine.signal("no-such-run", "approve", 1)


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({}, "sleep takes either duration= or until="),
        ({"duration": "soon"}, "duration='soon' is not a duration"),
        ({"duration": -1}, "duration must be > 0"),
        ({"duration": 1, "until": lambda context: None}, "either duration= or until="),
    ],
)
def test_a_bad_sleep_is_refused_at_definition(kwargs, problem):
    wf = Workflow(name="bad")
    with pytest.raises(DefinitionError, match=problem):
        wf.sleep(id="nap", **kwargs)
    assert "nap" not in wf.tasks


def test_durations_read_as_people_write_them():
    wf = Workflow(name="durations")
    wf.wait_for_signal(id="a", name="x", timeout="1h30m")
    wf.sleep(id="b", duration=timedelta(days=1))
    wf.sleep(id="c", duration="10m")
    assert wf.tasks["a"].options["timeout"] == 5400
    assert wf.tasks["b"].options["duration"] == 86400
    assert wf.tasks["c"].options["duration"] == 600


async def test_a_bad_signal_is_refused_clearly(store):
    wf = approval()
    async with Engine(store, [wf]) as engine:
        handle = await engine.start(wf)
        with pytest.raises(Exception, match="data is not JSON"):
            await engine.signal(handle.run_id, "approve", object())
        with pytest.raises(Exception, match="signal name is 1 to 200 characters"):
            await engine.signal(handle.run_id, "", 1)
        await handle.cancel()
        await asyncio.wait_for(handle.result(), 30)


async def test_a_waiting_run_is_cancelled_and_then_refuses_signals(store):
    wf = approval()
    async with Engine(store, [wf]) as engine:
        handle = await engine.start(wf)
        await waiting(engine, handle.run_id, "go")
        await handle.cancel("not needed")
        result = await handle.result(timeout=60)
        with pytest.raises(RunEnded, match="has ended \\(cancelled\\)"):
            await engine.signal(handle.run_id, "approve", 1)
    assert result.status == "cancelled" and result.error == "not needed"
    assert result.tasks["report"].status == "skipped"


async def test_a_kept_signal_and_a_wait_survive_a_restart_from_snapshots(store, caplog):
    wf = Workflow(name="snapshotted")
    wf.sleep(id="first", duration=1.5)
    wf.wait_for_signal(id="go", name="approve", timeout=60, depends_on=["first"])
    async with Engine(store, [wf], snapshot_every=1) as engine:
        handle = await engine.start(wf)
        await engine.signal(handle.run_id, "approve", "kept", signal_id="k1")
        await waiting(engine, handle.run_id, "first")
        await engine.index.wait(handle.run_id, lambda s: s.events >= 5, 30)
    caplog.set_level(logging.INFO, logger="deerflow.orchestrator")
    async with Engine(store, [wf], snapshot_every=1) as engine:
        result = await engine.wait(handle.run_id, timeout=60)
        history = await run_history(engine, handle.run_id)
    used, _ = loads(caplog)
    assert used >= 1, "the new owner did not load a snapshot"
    assert result.status == "completed", result.error
    assert result.output == "kept"
    assert [e.signal_id for e in history if isinstance(e, WaitEnded)] == [None, "k1"]


async def test_a_run_failed_by_a_timeout_is_retried_and_waits_again(store):
    wf = approval(timeout=3, on_timeout="fail")
    async with Engine(store, [wf]) as engine:
        handle = await engine.start(wf)
        assert (await handle.result(timeout=60)).status == "failed"
        await request_retry(engine, handle.run_id)
        state = await engine.index.wait(
            handle.run_id, lambda s: s.tasks["go"].status == "waiting" and s.retries == 1, 30
        )
        assert state is not None and state.tasks["go"].attempts == 2
        await engine.signal(handle.run_id, "approve", "second time")
        result = await engine.wait(handle.run_id, timeout=60)
    assert result.status == "completed", result.error
    assert result.output == {"approved": "second time"}


async def test_signals_kept_for_later_are_bounded_and_so_is_their_data(store):
    wf = Workflow(name="hoarder")
    wf.sleep(id="first", duration=60)
    wf.wait_for_signal(id="go", name="approve", depends_on=["first"])
    async with Engine(store, [wf]) as engine:
        handle = await engine.start(wf)
        with pytest.raises(InvalidSignal, match="over 65536"):
            await engine.signal(handle.run_id, "approve", "x" * 70_000)
        for i in range(MAX_PENDING + 5):
            await engine.signal(handle.run_id, "approve", i, signal_id=f"s{i}")
        state = await engine.index.wait(
            handle.run_id,
            lambda s: any(p["id"] == f"s{MAX_PENDING + 4}" for p in pending_signals(s)),
            30,
        )
        assert state is not None
        kept = pending_signals(state)
        assert [p["data"] for p in kept] == list(range(5, MAX_PENDING + 5))  # the oldest dropped
        await handle.cancel()


def test_the_waiting_kinds_keep_their_fingerprint():
    # Runs in flight compare it with their definition's: a kind's name must not change.
    wf = Workflow(name="every_wait")
    wf.sleep(id="nap", duration=1)
    wf.wait_for_signal(id="go", name="go", depends_on=["nap"])
    wf.wait_for_object(id="landed", bucket="b", key="k", depends_on=["go"])
    kinds = {t.id: t.kind.name for t in wf.tasks.values()}
    assert kinds == {"nap": "sleep", "go": "wait_for_signal", "landed": "wait_for_object"}
    assert wf.fingerprint() == "82aaad0a509149cb"
