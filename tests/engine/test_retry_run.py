"""Retrying a failed run from its failed task (``RunRetryRequested``), in the pure core."""

from __future__ import annotations

from deerflow import Workflow
from deerflow.core import history as h
from deerflow.core.decide import advance
from deerflow.core.state import RunState, fold

NOW = 1_000.0


def noop(context):
    return None


def chain(retries: int = 0) -> Workflow:
    wf = Workflow(name="chain")
    wf.task(id="a")(noop)
    wf.task(id="b", depends_on=["a"], retries=retries, retry_delay=5.0, backoff=2.0)(noop)
    wf.task(id="c", depends_on=["b"])(noop)
    return wf


def fan_out() -> Workflow:
    wf = Workflow(name="fan")
    wf.task(id="split")(noop)
    wf.parallel_tasks(id="each", depends_on=["split"])(lambda item, ctx: item)
    wf.task(id="merge", depends_on=["each"])(noop)
    return wf


def started(wf: Workflow) -> RunState:
    state = RunState(run_id="r1")
    fold(
        state,
        h.RunRequested(
            id="r1:requested", run_id="r1", workflow=wf.name, fingerprint=wf.fingerprint(), ts=NOW
        ),
    )
    return state


def completed(task: str, attempt: int = 1, output: object = None, **extra: object):
    return h.TaskCompleted(
        id=h.event_id("r1", task, attempt, "completed"),
        run_id="r1",
        task_id=task,
        attempt=attempt,
        output=output,
        ts=NOW,
        **extra,
    )


def failed(task: str, attempt: int = 1, retriable: bool = False):
    return h.TaskFailed(
        id=h.event_id("r1", task, attempt, "failed"),
        run_id="r1",
        task_id=task,
        attempt=attempt,
        error="boom",
        retriable=retriable,
        ts=NOW,
    )


def retry(number: int = 1) -> h.RunRetryRequested:
    return h.RunRetryRequested(id=h.event_id("r1", "retry", number), run_id="r1", retry=number)


def types(events) -> list[str]:
    return [f"{e.type}:{getattr(e, 'task_id', '') or ''}" for e in events]


def failed_chain(wf: Workflow) -> RunState:
    state = started(wf)
    advance(wf, state, NOW)
    fold(state, completed("a", output={"rows": 3}))
    advance(wf, state, NOW)
    fold(state, failed("b"))
    assert types(advance(wf, state, NOW)) == ["TaskAbandoned:b", "TaskSkipped:c", "RunFailed:"]
    return state


def test_a_retried_run_goes_on_from_the_failed_task_keeping_completed_outputs():
    wf = chain()
    state = failed_chain(wf)
    assert fold(state, retry())
    assert state.status == "running" and state.error is None
    assert [state.tasks[t].status for t in "abc"] == ["completed", "pending", "pending"]
    (scheduled,) = advance(wf, state, NOW)
    assert isinstance(scheduled, h.TaskScheduled)
    assert (scheduled.task_id, scheduled.attempt) == ("b", 2)  # a new attempt, a new event id
    fold(state, completed("b", 2))
    advance(wf, state, NOW)
    fold(state, completed("c", output={"done": True}))
    assert types(advance(wf, state, NOW)) == ["RunCompleted:"]
    assert state.tasks["a"].output == {"rows": 3} and state.tasks["a"].attempts == 1
    assert state.output == {"done": True}


def test_a_retried_run_that_fails_again_ends_failed_again_and_can_be_retried_again():
    wf = chain()
    state = failed_chain(wf)
    fold(state, retry())
    advance(wf, state, NOW)
    fold(state, failed("b", 2))
    assert types(advance(wf, state, NOW)) == ["TaskAbandoned:b", "TaskSkipped:c", "RunFailed:"]
    assert state.status == "failed" and state.tasks["c"].status == "skipped"
    assert fold(state, retry(2))
    assert types(advance(wf, state, NOW)) == ["TaskScheduled:b"]
    assert state.tasks["b"].attempts == 3


def test_a_retry_gives_the_task_its_retry_budget_again():
    wf = chain(retries=1)
    state = started(wf)
    advance(wf, state, NOW)
    fold(state, completed("a"))
    advance(wf, state, NOW)
    fold(state, failed("b", 1, retriable=True))
    (timer,) = advance(wf, state, NOW)
    assert isinstance(timer, h.TimerStarted)
    fold(state, h.TimerFired(id="r1:t1:fired", run_id="r1", timer_id=timer.timer_id))
    advance(wf, state, NOW)
    fold(state, failed("b", 2, retriable=True))
    assert types(advance(wf, state, NOW)) == ["TaskAbandoned:b", "TaskSkipped:c", "RunFailed:"]
    fold(state, retry())
    advance(wf, state, NOW)
    fold(state, failed("b", 3, retriable=True))
    (timer,) = advance(wf, state, NOW)
    assert isinstance(timer, h.TimerStarted)
    assert timer.fire_at == NOW + 5.0  # the first retry's delay, not the third's


def test_retries_of_running_or_completed_runs_and_repeated_retries_are_ignored():
    wf = chain()
    state = started(wf)
    assert not fold(state, retry())  # still running
    failed_run = failed_chain(chain())
    assert not fold(failed_run, retry(2))  # out of order: the next retry is number 1
    assert fold(failed_run, retry(1))
    assert not fold(failed_run, retry(1))  # the same request twice is one retry
    assert failed_run.retries == 1


def test_a_retried_fan_out_runs_only_its_failed_and_skipped_children_again():
    wf = fan_out()
    state = started(wf)
    advance(wf, state, NOW)
    fold(state, completed("split", output=[10, 20, 30]))
    advance(wf, state, NOW)
    specs = [{"id": str(i), "item": item} for i, item in enumerate([10, 20, 30])]
    fold(state, completed("each", expansion=specs))
    assert types(advance(wf, state, NOW)) == [
        "TaskScheduled:each/0",
        "TaskScheduled:each/1",
        "TaskScheduled:each/2",
    ]
    fold(state, completed("each/0", output=10))
    fold(state, failed("each/1"))
    fold(state, completed("each/2", output=30))
    advance(wf, state, NOW)
    assert state.status == "failed" and state.tasks["each/1"].status == "failed"
    fold(state, retry())
    assert state.tasks["each"].status == "expanded"
    (again,) = advance(wf, state, NOW)
    assert isinstance(again, h.TaskScheduled)
    assert (again.task_id, again.attempt) == ("each/1", 2)
    fold(state, completed("each/1", 2, output=20))
    advance(wf, state, NOW)
    assert state.tasks["each"].output == [10, 20, 30]
    fold(state, completed("merge", output="ok"))
    advance(wf, state, NOW)
    assert state.status == "completed"
    assert state.tasks["each/0"].attempts == 1  # completed children were not run again
