"""The pure core: fold and decide, without an event loop or a log."""

from __future__ import annotations

import pytest

from deerflow import DefinitionError, Engine, Workflow
from deerflow.core import history as h
from deerflow.core.decide import advance, decide
from deerflow.core.state import RunState, fold

NOW = 1_000.0


def noop(context):
    return None


def chain() -> Workflow:
    wf = Workflow(name="chain")
    wf.task(id="a")(noop)
    wf.task(id="b", depends_on=["a"], retries=2, retry_delay=5.0, backoff=2.0)(noop)
    wf.task(id="c", depends_on=["b"])(noop)
    return wf


def requested(wf: Workflow, run_id: str = "r1") -> h.RunRequested:
    return h.RunRequested(
        id=f"{run_id}:requested",
        run_id=run_id,
        workflow=wf.name,
        fingerprint=wf.fingerprint(),
        ts=NOW,
    )


def completed(task: str, attempt: int = 1, output: object = None, run_id: str = "r1"):
    return h.TaskCompleted(
        id=h.event_id(run_id, task, attempt, "completed"),
        run_id=run_id,
        task_id=task,
        attempt=attempt,
        output=output,
        ts=NOW,
    )


def failed(task: str, attempt: int = 1, retriable: bool = True, run_id: str = "r1"):
    return h.TaskFailed(
        id=h.event_id(run_id, task, attempt, "failed"),
        run_id=run_id,
        task_id=task,
        attempt=attempt,
        error="boom",
        retriable=retriable,
        ts=NOW,
    )


def started(wf: Workflow) -> RunState:
    state = RunState(run_id="r1")
    fold(state, requested(wf))
    return state


def types(events) -> list[str]:
    return [f"{e.type}:{getattr(e, 'task_id', '') or ''}" for e in events]


def test_a_new_run_schedules_only_its_roots():
    wf = chain()
    assert types(advance(wf, started(wf), NOW)) == ["TaskScheduled:a"]


def test_a_completed_task_schedules_its_dependents_and_the_last_one_ends_the_run():
    wf = chain()
    state = started(wf)
    advance(wf, state, NOW)
    fold(state, completed("a", output={"rows": 3}))
    assert types(advance(wf, state, NOW)) == ["TaskScheduled:b"]
    fold(state, completed("b"))
    advance(wf, state, NOW)
    fold(state, completed("c", output={"done": True}))
    events = advance(wf, state, NOW)
    assert types(events) == ["RunCompleted:"]
    assert state.status == "completed" and state.output == {"done": True}


def test_a_failed_attempt_waits_on_a_durable_timer_with_exponential_backoff():
    wf = chain()
    state = started(wf)
    advance(wf, state, NOW)
    fold(state, completed("a"))
    advance(wf, state, NOW)
    fold(state, failed("b", 1))
    (timer,) = advance(wf, state, NOW)
    assert isinstance(timer, h.TimerStarted) and timer.fire_at == NOW + 5.0
    assert decide(wf, state, NOW + 100) == []  # nothing happens before the timer fires
    fold(state, h.TimerFired(id="r1:t:fired", run_id="r1", timer_id=timer.timer_id))
    assert types(advance(wf, state, NOW)) == ["TaskScheduled:b"]
    assert state.tasks["b"].attempts == 2
    fold(state, failed("b", 2))
    (timer2,) = advance(wf, state, NOW)
    assert isinstance(timer2, h.TimerStarted)
    assert timer2.fire_at == NOW + 10.0  # 5 * 2 ** 1


def test_exhausted_retries_fail_the_run_and_skip_downstream():
    wf = chain()
    state = started(wf)
    advance(wf, state, NOW)
    fold(state, completed("a"))
    advance(wf, state, NOW)
    for attempt in (1, 2, 3):
        fold(state, failed("b", attempt))
        for event in advance(wf, state, NOW):
            if isinstance(event, h.TimerStarted):
                fold(state, h.TimerFired(id=f"x{attempt}", run_id="r1", timer_id=event.timer_id))
                advance(wf, state, NOW)
    assert state.status == "failed"
    assert state.failed_task == "b"
    assert state.tasks["b"].attempts == 3
    assert state.tasks["c"].status == "skipped"


def test_a_non_retryable_error_fails_at_once():
    wf = chain()
    state = started(wf)
    advance(wf, state, NOW)
    fold(state, failed("a", 1, retriable=True))
    wf2 = chain()
    state2 = started(wf2)
    advance(wf2, state2, NOW)
    fold(state2, completed("a"))
    advance(wf2, state2, NOW)
    fold(state2, failed("b", 1, retriable=False))
    events = advance(wf2, state2, NOW)
    assert types(events) == ["TaskAbandoned:b", "TaskSkipped:c", "RunFailed:"]


def test_a_fallback_supplies_the_output_when_retries_are_exhausted():
    wf = Workflow(name="fb")
    wf.task(id="a", fallback=lambda ctx: {"cached": True})(noop)
    state = started(wf)
    advance(wf, state, NOW)
    fold(state, failed("a", 1))
    (sched,) = advance(wf, state, NOW)
    assert isinstance(sched, h.TaskScheduled) and sched.fallback and sched.attempt == 2
    fold(state, completed("a", 2, output={"cached": True}))
    advance(wf, state, NOW)
    assert state.status == "completed" and state.output == {"cached": True}


def test_independent_branches_finish_when_another_fails():
    wf = Workflow(name="branches")
    wf.task(id="a")(noop)
    wf.task(id="b")(noop)
    wf.task(id="after_a", depends_on=["a"])(noop)
    state = started(wf)
    assert types(advance(wf, state, NOW)) == ["TaskScheduled:a", "TaskScheduled:b"]
    fold(state, failed("a", 1, retriable=False))
    assert types(advance(wf, state, NOW)) == ["TaskAbandoned:a", "TaskSkipped:after_a"]
    assert state.status == "running"  # b is still running
    fold(state, completed("b"))
    assert types(advance(wf, state, NOW)) == ["RunFailed:"]


def test_duplicated_and_late_events_do_not_change_the_outcome():
    wf = chain()
    history: list[h.HistoryEvent] = [requested(wf)]
    state = RunState(run_id="r1")
    fold(state, history[0])
    history += advance(wf, state, NOW)
    for task in ("a", "b", "c"):
        event = completed(task, output=task)
        fold(state, event)
        history.append(event)
        history += advance(wf, state, NOW)
    assert state.status == "completed"
    # Replay with every event twice, plus a stale completion of an old attempt.
    replayed = RunState(run_id="r1")
    for event in history:
        fold(replayed, event)
        fold(replayed, event)
    fold(replayed, completed("b", attempt=7, output="stale"))
    assert replayed.status == "completed"
    assert replayed.output == state.output == "c"
    assert {k: v.output for k, v in replayed.tasks.items()} == {"a": "a", "b": "b", "c": "c"}


def test_cancellation_skips_pending_tasks_and_ends_the_run():
    wf = chain()
    state = started(wf)
    advance(wf, state, NOW)
    fold(state, h.RunCancelRequested(id="r1:cancel", run_id="r1", reason="operator"))
    events = advance(wf, state, NOW)
    assert types(events) == ["TaskSkipped:b", "TaskSkipped:c", "RunCancelled:"]
    assert state.status == "cancelled"


def test_a_changed_definition_parks_the_run_naming_the_change():
    from deerflow.core.change import definition_change

    old = chain()
    state = started(old)
    advance(old, state, NOW)
    new = Workflow(name="chain")
    new.task(id="a2")(noop)
    assert advance(new, state, NOW) == []  # parked: nothing decided, nothing ended
    assert not state.terminal
    reason = definition_change(new, state) or ""
    assert "changed" in reason and "['a']" in reason


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda wf: (wf.task(id="x")(noop), wf.task(id="x")(noop)), "duplicate task id"),
        (lambda wf: wf.task(id="x", retries=-1)(noop), "retries must be >= 0"),
        (lambda wf: wf.task(id="bad id!")(noop), "invalid task id"),
        (lambda wf: wf.task(id="x", depends_on="a")(noop), "depends_on must be a list"),
        (lambda wf: wf.task(id="x", timeout=0)(noop), "timeout must be > 0"),
    ],
)
def test_invalid_definitions_fail_when_defined_naming_workflow_and_task(build, message):
    wf = Workflow(name="broken")
    with pytest.raises(DefinitionError, match=message) as info:
        build(wf)
    assert "broken" in str(info.value)


def test_cycles_are_reported_with_their_path():
    from deerflow.core.definition import check_acyclic

    with pytest.raises(DefinitionError, match="cycle: a → b → a"):
        check_acyclic("wf", {"a": ["b"], "b": ["a"]})


def test_a_dependency_may_name_a_task_declared_later():
    wf = Workflow(name="forward")
    wf.task(id="report", depends_on=["load"])(noop)
    wf.task(id="load", depends_on=["extract"])(noop)
    wf.task(id="extract")(noop)
    wf.validate()
    assert wf.order == ["extract", "load", "report"]  # each task after what it needs
    assert wf.sinks() == ["report"]
    assert wf.ancestors("report") == {"extract", "load"}


def test_a_loop_is_refused_by_the_declaration_that_closes_it_naming_the_path():
    wf = Workflow(name="loops")
    with pytest.raises(DefinitionError, match=r"task 'a': dependency cycle: a → a$"):
        wf.task(id="a", depends_on=["a"])(noop)
    wf.task(id="a", depends_on=["b"])(noop)  # b is declared later: a forward reference
    with pytest.raises(DefinitionError, match=r"task 'b': dependency cycle: a → b → a$"):
        wf.task(id="b", depends_on=["a"])(noop)
    wf.task(id="c", depends_on=["d"])(noop)
    with pytest.raises(DefinitionError, match=r"task 'e': dependency cycle: c → d → e → c$"):
        wf.task(id="d", depends_on=["e"])(noop)
        wf.task(id="e", depends_on=["c"])(noop)
    wf.task(id="b")(noop)  # refusals leave the rest of the workflow usable
    wf.task(id="e")(noop)
    wf.validate()
    assert wf.order == ["b", "a", "e", "d", "c"]


def test_a_dependency_never_declared_fails_when_the_definition_is_complete():
    wf = Workflow(name="broken")
    wf.task(id="x", depends_on=["missing"])(noop)  # may still be declared
    wf.task(id="y")(noop)
    with pytest.raises(DefinitionError) as info:
        wf.validate()
    assert str(info.value) == (
        "workflow 'broken', task 'x': depends_on names unknown task 'missing' (known: x, y)"
    )
    with pytest.raises(DefinitionError, match="unknown task 'missing'"):
        Engine("memory://", [wf])


def test_an_outcome_that_overtakes_its_scheduling_folds_to_the_same_state():
    wf = chain()
    in_order = started(wf)
    events = advance(wf, in_order, NOW)  # TaskScheduled(a, 1)
    done = completed("a", output="A")
    fold(in_order, done)
    overtaken = started(wf)
    fold(overtaken, done)  # the worker's answer landed first
    for event in events:
        fold(overtaken, event)  # the late TaskScheduled changes nothing
    assert overtaken.tasks["a"].status == in_order.tasks["a"].status == "completed"
    assert overtaken.tasks["a"].output == "A" and overtaken.tasks["a"].attempts == 1
    assert overtaken.events == in_order.events == 3  # what results and the index report
    assert types(advance(wf, overtaken, NOW)) == types(advance(wf, in_order, NOW))
