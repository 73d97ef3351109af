"""A wait whose start was lost (its attempt's ``TaskScheduled`` durable, the ``WaitStarted``
appended after it not: a crash between two records of one append) is started again by the
run's next owner, instead of leaving the node scheduled for ever."""

from __future__ import annotations

from deerflow import Workflow
from deerflow.core import history as h
from deerflow.core.decide import advance
from deerflow.core.state import RunState, fold
from deerflow.waiting import WaitStarted


def test_a_lost_wait_start_is_decided_again():
    wf = Workflow(name="lost_start")
    wf.wait_for_signal(id="go", name="approve", timeout=60)
    run_id = "r1"
    state = RunState(run_id=run_id)
    fold(state, h.RunRequested(id=h.event_id(run_id, "requested"), run_id=run_id, workflow="x"))
    decided = advance(wf, state, 1.0)
    assert [e.type for e in decided] == ["TaskScheduled", "WaitStarted", "TimerStarted"]

    survived = RunState(run_id=run_id)  # what the next owner folds: the first record only
    fold(survived, h.RunRequested(id=h.event_id(run_id, "requested"), run_id=run_id, workflow="x"))
    fold(survived, decided[0])
    again = advance(wf, survived, 5.0)
    assert [e.type for e in again] == ["WaitStarted", "TimerStarted"]
    started = again[0]
    assert isinstance(started, WaitStarted) and started.deadline == 65.0
    assert survived.tasks["go"].status == "waiting"
    assert advance(wf, survived, 6.0) == []  # started once
