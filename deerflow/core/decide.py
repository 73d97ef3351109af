"""The pure decider: what happens next = decide(definition, state).

``decide`` looks at a folded run and returns the events that move it on (schedule a task,
start a retry timer, skip a task whose upstream failed, end the run). It performs no I/O and
reads no clock: ``now`` is passed in and only stamps the events. Event ids are deterministic,
so deciding twice on the same state yields the same events, which the fold then ignores.

Most events belong to the run being decided. A few belong to other runs (the *outbox*): a run
a node's kind starts (a child run), and a child run's outcome reported to its parent.
"""

from __future__ import annotations

from typing import Any

from deerflow.core import history as h
from deerflow.core.change import definition_change
from deerflow.core.decide_nodes import generation, on_failed_attempt, schedule, within_budget
from deerflow.core.definition import TaskDef, WorkflowDef
from deerflow.core.state import (
    COMPLETED,
    FAILED,
    PENDING,
    RETRY_WAIT,
    SCHEDULED,
    SKIPPED,
    TASK_DONE,
    RunState,
    TaskState,
    fold,
)

_EMPTY = TaskState()
#: statuses in which a task decides nothing: running on a worker, or done
_WAITING_ON_OTHERS = frozenset({SCHEDULED, *TASK_DONE})


def decide(wf: WorkflowDef, state: RunState, now: float) -> list[h.HistoryEvent]:
    """Events that advance ``state`` one step under definition ``wf``."""
    if not state.requested or state.terminal:
        return []
    if state.cancel_requested:
        return _cancel(wf, state, now)
    if definition_change(wf, state) is not None:
        return []  # parked: nothing re-runs or is skipped until its definition is loaded
    own = wf.decide_run(state, now)
    if own is not None:
        return own  # a feature decides this run as a whole (a state machine)
    events: list[h.HistoryEvent] = []
    # Workflow(max_parallel=N): the fold counts running attempts, so the budget is O(1).
    budget = None if wf.max_parallel is None else wf.max_parallel - state.running
    for task_id in wf.order:
        step = _step(wf, task_id, state, now, budget)
        if budget is not None:
            step, budget = within_budget(step, budget)
        events.extend(step)
    if not events:
        events.extend(_maybe_finish(wf, state, now))
    return events


def _step(
    wf: WorkflowDef, task_id: str, state: RunState, now: float, budget: int | None
) -> list[h.HistoryEvent]:
    task = state.tasks.get(task_id, _EMPTY)
    if task.status in _WAITING_ON_OTHERS:  # checked first: most tasks are here, most times
        if task.status != SCHEDULED or task_id not in wf.off_worker:
            return []
        # An attempt no worker runs is its kind's to watch while scheduled: what the kind
        # decided with its scheduling may have been lost (a crash between two records).
        node = wf.get(task_id)
        return node.kind.decide(node, task, state, now, budget)
    if task.status == PENDING:
        return _on_pending(wf, wf.get(task_id), state, now)
    if task.status == RETRY_WAIT:
        return on_failed_attempt(wf.get(task_id), task_id, task, state, now)
    node = wf.get(task_id)  # a status of its kind's (a node waiting on its children)
    return node.kind.decide(node, task, state, now, budget)


def advance(wf: WorkflowDef, state: RunState, now: float) -> list[h.HistoryEvent]:
    """Decide and fold repeatedly until the run needs outside input; return the new events.

    ``state`` ends up including the returned events of this run (the caller appends them all
    to the log, outbox events included).
    """
    produced: list[h.HistoryEvent] = []
    while True:
        progressed = False
        for event in decide(wf, state, now):
            if event.run_id != state.run_id:
                produced.append(event)  # outbox: another run's history
            elif fold(state, event):
                produced.append(event)
                progressed = True
        if not progressed:
            return produced


def _on_pending(
    wf: WorkflowDef, task: TaskDef, state: RunState, now: float
) -> list[h.HistoryEvent]:
    run_id = state.run_id
    for dep in task.depends_on:
        status = state.tasks.get(dep, _EMPTY).status
        if status in (FAILED, SKIPPED):
            reason = f"upstream task {dep!r} {status}"
            skip_id = h.event_id(run_id, task.id, "skipped", *generation(state))
            return [
                h.TaskSkipped(id=skip_id, run_id=run_id, ts=now, task_id=task.id, reason=reason)
            ]
        if status != COMPLETED:
            return []
    attempt = state.tasks.get(task.id, _EMPTY).attempts + 1  # > 1 after an operator retry
    return [
        schedule(run_id, task.id, attempt, now),
        *task.kind.on_scheduled(task, state, attempt, now),
    ]


def _maybe_finish(wf: WorkflowDef, state: RunState, now: float) -> list[h.HistoryEvent]:
    run_id = state.run_id
    tasks = state.tasks
    failed: list[str] = []
    for tid in wf.order:  # stops at the first task not done: asked after most decisions
        status = tasks.get(tid, _EMPTY).status
        if status not in TASK_DONE:
            return []
        if status == FAILED:
            failed.append(tid)
    if failed:
        first = failed[0]
        error = f"task {first!r} failed: {state.tasks[first].error}"
        events = wf.decide_failure(state, now, first, error)
        if events is not None:  # a feature ends the run its own way (a saga rolls back)
            if events and events[-1].type in h.TERMINAL_TYPES:
                return events[:-1] + _finish(wf, state, now, events[-1])
            return events
        failed_id = h.event_id(run_id, "failed", *generation(state))
        return _finish(
            wf,
            state,
            now,
            h.RunFailed(id=failed_id, run_id=run_id, ts=now, error=error, failed_task=first),
        )
    return _finish(
        wf,
        state,
        now,
        h.RunCompleted(
            id=h.event_id(run_id, "completed"), run_id=run_id, ts=now, output=run_output(wf, state)
        ),
    )


def _finish(
    wf: WorkflowDef, state: RunState, now: float, terminal: h.HistoryEvent
) -> list[h.HistoryEvent]:
    """The terminal event, after what the workflow records as the run ends
    (:meth:`~WorkflowDef.on_ending`), plus its outcome for the parent run when this run is a
    child run."""
    before = wf.on_ending(state, now)
    parents = dict.fromkeys([state.parent, *wf.ending_reports_to(state)])
    reports = [_report(parent, state, terminal, now) for parent in parents if parent is not None]
    return [*before, terminal, *reports]


def _report(
    parent: h.ParentRef, state: RunState, terminal: h.HistoryEvent, now: float
) -> h.HistoryEvent:
    """What a child run's terminal event tells its parent's task attempt."""
    if isinstance(terminal, h.RunCompleted):
        return h.TaskCompleted(
            id=h.event_id(parent.run_id, parent.task_id, parent.attempt, "completed"),
            run_id=parent.run_id,
            ts=now,
            task_id=parent.task_id,
            attempt=parent.attempt,
            output=terminal.output,
            started_at=state.started_at,
        )
    error = getattr(terminal, "error", None) or terminal.type
    return child_failed(
        parent,
        now,
        f"sub-workflow run {state.run_id} {terminal.type}: {error}",
        started_at=state.started_at,
        retriable=not isinstance(terminal, h.RunCancelled),
    )


def child_failed(
    parent: h.ParentRef,
    now: float,
    error: str,
    *,
    started_at: float | None = None,
    retriable: bool = True,
) -> h.TaskFailed:
    """What a child run that did not complete reports to its parent's task attempt."""
    return h.TaskFailed(
        error=error,
        error_type="SubWorkflowFailed",
        retriable=retriable,
        started_at=started_at,
        ts=now,
        # the id the parent's attempt fails by, whoever reports it (the child or its gate)
        id=h.event_id(parent.run_id, parent.task_id, parent.attempt, "failed"),
        run_id=parent.run_id,
        task_id=parent.task_id,
        attempt=parent.attempt,
    )


def run_output(wf: WorkflowDef, state: RunState) -> Any:
    """The sink task's output, or a dict of outputs by task id when there are several sinks."""
    sinks = [s for s in wf.sinks() if state.tasks.get(s, _EMPTY).status == COMPLETED]
    if len(sinks) == 1:
        return state.tasks[sinks[0]].output
    return {s: state.tasks[s].output for s in sinks}


def _cancel(wf: WorkflowDef, state: RunState, now: float) -> list[h.HistoryEvent]:
    run_id = state.run_id
    events: list[h.HistoryEvent] = [
        h.TaskSkipped(
            id=h.event_id(run_id, tid, "skipped", *generation(state)),
            run_id=run_id,
            ts=now,
            task_id=tid,
            reason="run cancelled",
        )
        for tid in wf.order
        if state.tasks.get(tid, _EMPTY).status in (PENDING, RETRY_WAIT)
    ]
    events.extend(
        _finish(
            wf,
            state,
            now,
            h.RunCancelled(
                id=h.event_id(run_id, "cancelled"),
                run_id=run_id,
                ts=now,
                reason=state.error or "cancelled",
            ),
        )
    )
    return events


def scheduled_attempts(state: RunState) -> list[tuple[str, int, bool]]:
    """Tasks whose current attempt is dispatched and not finished: (task id, attempt, fallback)."""
    return [
        (tid, t.attempts, t.fallback) for tid, t in state.tasks.items() if t.status == SCHEDULED
    ]
