"""The pure decider: what happens next = decide(definition, state).

``decide`` looks at a folded run and returns the events that move it on (schedule a task,
start a retry timer, skip a task whose upstream failed, end the run). It performs no I/O and
reads no clock: ``now`` is passed in and only stamps the events. Event ids are deterministic,
so deciding twice on the same state yields the same events, which the fold then ignores.
"""

from __future__ import annotations

from typing import Any

from deerflow.engine import _history as h
from deerflow.engine._definition import TaskDef, Workflow
from deerflow.engine._state import (
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


def decide(wf: Workflow, state: RunState, now: float) -> list[h.HistoryEvent]:
    """Events that advance ``state`` one step under definition ``wf``."""
    if not state.requested or state.terminal:
        return []
    if state.cancel_requested:
        return _cancel(wf, state, now)
    changed = _definition_change(wf, state)
    if changed is not None:
        return [h.RunFailed(id=h.event_id(state.run_id, "failed"), run_id=state.run_id, ts=now,
                            error=changed)]
    events: list[h.HistoryEvent] = []
    for task_id in wf.order:
        task = state.tasks.get(task_id, _EMPTY)
        if task.status == PENDING:
            events.extend(_on_pending(wf.get(task_id), state, now))
        elif task.status == RETRY_WAIT:
            events.extend(_on_failed_attempt(wf.get(task_id), task, state, now))
    if not events:
        events.extend(_maybe_finish(wf, state, now))
    return events


def advance(wf: Workflow, state: RunState, now: float) -> list[h.HistoryEvent]:
    """Decide and fold repeatedly until the run needs outside input; return the new events.

    ``state`` ends up including the returned events (the caller appends them to the log).
    """
    produced: list[h.HistoryEvent] = []
    while True:
        events = [e for e in decide(wf, state, now) if fold(state, e)]
        if not events:
            return produced
        produced.extend(events)


def _on_pending(task: TaskDef, state: RunState, now: float) -> list[h.HistoryEvent]:
    run_id = state.run_id
    for dep in task.depends_on:
        status = state.tasks.get(dep, _EMPTY).status
        if status in (FAILED, SKIPPED):
            reason = f"upstream task {dep!r} {status}"
            return [h.TaskSkipped(id=h.event_id(run_id, task.id, "skipped"), run_id=run_id,
                                  ts=now, task_id=task.id, reason=reason)]
        if status != COMPLETED:
            return []
    return [_schedule(run_id, task.id, 1, now)]


def _schedule(run_id: str, task_id: str, attempt: int, now: float, *,
              fallback: bool = False) -> h.TaskScheduled:
    return h.TaskScheduled(id=h.event_id(run_id, task_id, attempt, "scheduled"), run_id=run_id,
                           ts=now, task_id=task_id, attempt=attempt, fallback=fallback)


def _on_failed_attempt(
    task: TaskDef, ts: TaskState, state: RunState, now: float
) -> list[h.HistoryEvent]:
    run_id = state.run_id
    nxt = ts.attempts + 1
    if not ts.fallback and ts.retriable and ts.attempts < task.retry.max_attempts:
        if ts.timer_id is None:
            delay = ts.next_retry_delay
            if delay is None:
                delay = task.retry.delay_before(nxt)
            if delay <= 0:
                return [_schedule(run_id, task.id, nxt, now)]
            timer_id = f"retry:{task.id}:{nxt}"
            return [h.TimerStarted(id=h.event_id(run_id, timer_id, "started"), run_id=run_id,
                                   ts=now, timer_id=timer_id, task_id=task.id, attempt=nxt,
                                   fire_at=(ts.failed_at or now) + delay)]
        if ts.timer_id not in state.timers:  # the timer fired
            return [_schedule(run_id, task.id, nxt, now)]
        return []
    if not ts.fallback and task.fallback is not None:
        return [_schedule(run_id, task.id, nxt, now, fallback=True)]
    error = ts.error or "failed"
    return [h.TaskAbandoned(id=h.event_id(run_id, task.id, "abandoned"), run_id=run_id, ts=now,
                            task_id=task.id, error=error)]


def _maybe_finish(wf: Workflow, state: RunState, now: float) -> list[h.HistoryEvent]:
    run_id = state.run_id
    statuses = {tid: state.tasks.get(tid, _EMPTY).status for tid in wf.order}
    if any(s not in TASK_DONE for s in statuses.values()):
        return []
    failed = [tid for tid, s in statuses.items() if s == FAILED]
    if failed:
        first = failed[0]
        error = f"task {first!r} failed: {state.tasks[first].error}"
        return [h.RunFailed(id=h.event_id(run_id, "failed"), run_id=run_id, ts=now, error=error,
                            failed_task=first)]
    return [h.RunCompleted(id=h.event_id(run_id, "completed"), run_id=run_id, ts=now,
                           output=run_output(wf, state))]


def run_output(wf: Workflow, state: RunState) -> Any:
    """The sink task's output, or a dict of outputs by task id when there are several sinks."""
    sinks = [s for s in wf.sinks() if state.tasks.get(s, _EMPTY).status == COMPLETED]
    if len(sinks) == 1:
        return state.tasks[sinks[0]].output
    return {s: state.tasks[s].output for s in sinks}


def _cancel(wf: Workflow, state: RunState, now: float) -> list[h.HistoryEvent]:
    run_id = state.run_id
    events: list[h.HistoryEvent] = [
        h.TaskSkipped(id=h.event_id(run_id, tid, "skipped"), run_id=run_id, ts=now, task_id=tid,
                      reason="run cancelled")
        for tid in wf.order
        if state.tasks.get(tid, _EMPTY).status in (PENDING, RETRY_WAIT)
    ]
    events.append(h.RunCancelled(id=h.event_id(run_id, "cancelled"), run_id=run_id, ts=now,
                                 reason=state.error or "cancelled"))
    return events


def _definition_change(wf: Workflow, state: RunState) -> str | None:
    """Describe how ``wf`` differs from the definition the run started on, if it does."""
    if state.version != wf.version:
        return (f"run was started on version {state.version!r} of workflow {wf.name!r} but "
                f"version {wf.version!r} is loaded; keep the old version registered")
    if not state.fingerprint or state.fingerprint == wf.fingerprint():
        return None
    unknown = sorted(tid for tid in state.tasks if tid not in wf.tasks)
    detail = f"tasks {unknown} no longer exist" if unknown else "tasks or dependencies changed"
    return (f"workflow {wf.name!r} changed under a running run ({detail}); "
            "bump Workflow(version=...) to change a workflow with runs in flight")


def scheduled_attempts(state: RunState) -> list[tuple[str, int, bool]]:
    """Tasks whose current attempt is dispatched and not finished: (task id, attempt, fallback)."""
    return [(tid, t.attempts, t.fallback) for tid, t in state.tasks.items() if t.status == SCHEDULED]
