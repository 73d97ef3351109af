"""The fold of the core's task and timer events, and of the children of expanded nodes.

Each function applies one event type to a run state in place and returns whether it changed
anything; :data:`APPLY` names them by event type for :func:`deerflow.core.fold.fold`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from deerflow.core import history as h
from deerflow.core.state import (
    COMPLETED,
    EXPANDED,
    FAILED,
    PENDING,
    RETRY_WAIT,
    SCHEDULED,
    SKIPPED,
    TASK_DONE,
    Expansion,
    RunState,
    TaskState,
)


def _task_scheduled(state: RunState, e: h.TaskScheduled) -> bool:
    task = state.task(e.task_id)
    if task.status in TASK_DONE or task.status == EXPANDED or e.attempt <= task.attempts:
        return False
    exp = _expansion_of(state, task)
    if exp is not None:
        if task.status == PENDING:
            exp.running += 1
            if exp.ready and exp.ready[0] == e.task_id:
                exp.ready.popleft()
            elif e.task_id in exp.ready:
                exp.ready.remove(e.task_id)
        exp.retrying.discard(e.task_id)
    state.running += 1
    task.status = SCHEDULED
    task.attempts = e.attempt
    task.fallback = e.fallback
    task.eager = e.eager
    task.scheduled_at = e.ts
    task.timer_id = None
    task.fire_at = None
    return True


def _task_requeued(state: RunState, e: h.TaskRequeued) -> bool:
    task = state.tasks.get(e.task_id)
    if task is None or task.status != SCHEDULED or task.attempts != e.attempt or not task.eager:
        return False
    task.eager = False  # a queue message delivers it now: nobody needs to re-dispatch it
    return True


def _current_attempt(state: RunState, e: h.TaskCompleted | h.TaskFailed) -> TaskState | None:
    """The task if ``e`` reports its current attempt.

    An outcome may reach the history before the ``TaskScheduled`` that recorded its dispatch
    (the dispatch is appended first, and a fast worker can answer before the orchestrator's
    second append lands). The outcome of the next attempt then implies its scheduling, so the
    fold gives the same state in either order; the late ``TaskScheduled`` is ignored.
    """
    task = state.tasks.get(e.task_id)
    if task is None and e.attempt == 1:
        task = state.task(e.task_id)
    if task is not None and task.status in (PENDING, RETRY_WAIT) and e.attempt == task.attempts + 1:
        implied = h.TaskScheduled(
            id=h.event_id(state.run_id, e.task_id, e.attempt, "scheduled"),
            run_id=state.run_id,
            ts=e.ts,
            task_id=e.task_id,
            attempt=e.attempt,
            fallback=e.fallback,
        )
        if _task_scheduled(state, implied):
            # Counted as if read, so that the late real one, a repeat by its attempt number,
            # leaves a run reporting the same number of events whichever order they came in.
            state.events += 1
    if task is None or task.status != SCHEDULED or task.attempts != e.attempt:
        return None
    return task


def _task_completed(state: RunState, e: h.TaskCompleted) -> bool:
    task = _current_attempt(state, e)
    if task is None:
        return False
    state.running -= 1
    task.error = None
    task.started_at = e.started_at
    if e.expansion is not None:
        task.status = EXPANDED
        task.expansion = Expansion.plan(e.task_id, e.expansion)
        for child in task.expansion.children:
            state.tasks[child] = TaskState(node=e.task_id)
        return True
    task.status = COMPLETED
    task.output = e.output
    task.finished_at = e.ts
    exp = _expansion_of(state, task)
    if exp is not None:
        exp.running -= 1
        exp.completed += 1
        for dependent in exp.dependents.get(e.task_id, ()):
            exp.waiting_on[dependent] -= 1
            if exp.waiting_on[dependent] == 0:
                exp.ready.append(dependent)
    return True


def _expansion_of(state: RunState, task: TaskState) -> Expansion | None:
    if task.node is None:
        return None
    return state.tasks[task.node].expansion


def _task_collected(state: RunState, e: h.TaskCollected) -> bool:
    task = state.tasks.get(e.task_id)
    if task is None or task.status != EXPANDED:
        return False
    task.status = COMPLETED
    task.output = e.output
    task.finished_at = e.ts
    return True


def _task_failed(state: RunState, e: h.TaskFailed) -> bool:
    task = _current_attempt(state, e)
    if task is None:
        return False
    state.running -= 1
    task.status = RETRY_WAIT
    task.error = e.error
    task.error_type = e.error_type
    task.traceback = e.traceback
    task.retriable = e.retriable
    task.next_retry_delay = e.next_retry_delay
    task.failed_at = e.ts
    task.started_at = e.started_at
    task.finished_at = e.ts
    exp = _expansion_of(state, task)
    if exp is not None:
        exp.retrying.add(e.task_id)
    return True


def _task_skipped(state: RunState, e: h.TaskSkipped) -> bool:
    task = state.task(e.task_id)
    if task.status not in (PENDING, RETRY_WAIT):
        return False
    exp = _expansion_of(state, task)
    if exp is not None and task.status == RETRY_WAIT:
        exp.running -= 1
        exp.retrying.discard(e.task_id)
    task.status = SKIPPED
    task.error = e.reason
    task.finished_at = e.ts
    return True


def _task_abandoned(state: RunState, e: h.TaskAbandoned) -> bool:
    task = state.task(e.task_id)
    if task.status in TASK_DONE or task.status == SCHEDULED:
        return False
    exp = _expansion_of(state, task)
    if exp is not None:
        if task.status == RETRY_WAIT:
            exp.running -= 1
        exp.retrying.discard(e.task_id)
        exp.failed = exp.failed or e.task_id
    task.status = FAILED
    task.error = e.error
    task.finished_at = e.ts
    return True


def _timer_started(state: RunState, e: h.TimerStarted) -> bool:
    if e.timer_id in state.timers:
        return False
    if e.task_id is not None and e.attempt is not None:
        task = state.tasks.get(e.task_id)
        # A retry timer starts while its task waits on the failed attempt before ``attempt``;
        # otherwise it is a repeat: it started (and fired: it is no longer pending), its
        # attempt ran, or an operator retry reopened the task since.
        if task is not None and (
            task.status != RETRY_WAIT or task.timer_id == e.timer_id or task.attempts >= e.attempt
        ):
            return False
    state.timers[e.timer_id] = e.fire_at
    if e.task_id is not None:
        task = state.task(e.task_id)
        task.timer_id = e.timer_id
        task.fire_at = e.fire_at
    return True


def _timer_fired(state: RunState, e: h.TimerFired) -> bool:
    return state.timers.pop(e.timer_id, None) is not None


#: what folds each of the core's task and timer events, by type
APPLY: dict[str, Callable[[RunState, Any], bool]] = {
    "TaskScheduled": _task_scheduled,
    "TaskCompleted": _task_completed,
    "TaskFailed": _task_failed,
    "TaskSkipped": _task_skipped,
    "TaskAbandoned": _task_abandoned,
    "TaskCollected": _task_collected,
    "TaskRequeued": _task_requeued,
    "TimerStarted": _timer_started,
    "TimerFired": _timer_fired,
}
