"""Deciding a rollback: when a run with compensations fails, undo its completed steps.

Compensations run only for steps that completed, in reverse dependency order: the
compensation of a step waits until the compensations of every completed step that depends on
it are done (steps of one saga ``order`` have no dependency between them, so theirs run in
parallel). Each compensation has its own retry policy. The run ends ``compensated`` when all
succeeded, or ``compensation_failed`` — visible to an operator, never ``completed`` — when one
kept failing.
"""

from __future__ import annotations

from deerflow.core import RunState, TaskState, WorkflowDef
from deerflow.core import history as h
from deerflow.core.decide_nodes import on_failed_attempt, schedule
from deerflow.core.state import COMPLETED, FAILED, PENDING, RETRY_WAIT, SCHEDULED
from deerflow.sagas._fold import RunCompensated, RunCompensationFailed

_EMPTY = TaskState()


def roll_back(
    wf: WorkflowDef, state: RunState, now: float, failed_task: str, error: str
) -> list[h.HistoryEvent]:
    """The next events of the rollback after ``failed_task`` failed with ``error``."""
    run_id = state.run_id
    done_steps = [
        t
        for t in wf.order
        if wf.get(t).compensation is not None and state.tasks.get(t, _EMPTY).status == COMPLETED
    ]
    events: list[h.HistoryEvent] = []
    busy = False
    broken: str | None = None
    for step in done_steps:
        comp = wf.get(step).compensation
        assert comp is not None
        cs = state.tasks.get(comp.id, _EMPTY)
        if cs.status in (SCHEDULED, RETRY_WAIT):
            busy = True
        if cs.status == FAILED:
            broken = broken or comp.id
        if cs.status == RETRY_WAIT:
            events.extend(on_failed_attempt(comp, comp.id, cs, state, now))
        elif cs.status == PENDING and not _waits_for_dependents(wf, state, step, done_steps):
            events.append(schedule(run_id, comp.id, 1, now))
    if events or busy:
        return events
    if broken is not None:
        return [
            RunCompensationFailed(
                id=h.event_id(run_id, "compensation-failed"),
                run_id=run_id,
                ts=now,
                error=(f"{error}; compensation {broken!r} failed: {state.tasks[broken].error}"),
                failed_task=failed_task,
                failed_compensation=broken,
            )
        ]
    return [
        RunCompensated(
            id=h.event_id(run_id, "compensated"),
            run_id=run_id,
            ts=now,
            error=error,
            failed_task=failed_task,
        )
    ]


def _waits_for_dependents(
    wf: WorkflowDef, state: RunState, step: str, done_steps: list[str]
) -> bool:
    """Whether a completed step depending on ``step`` still has its compensation to finish."""
    for other in done_steps:
        if other != step and step in wf.ancestors(other):
            comp = wf.get(other).compensation
            assert comp is not None
            if state.tasks.get(comp.id, _EMPTY).status != COMPLETED:
                return True
    return False
