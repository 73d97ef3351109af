"""Decisions for one node: scheduling an attempt (with what its kind adds) and retries."""

from __future__ import annotations

from deerflow.core import history as h
from deerflow.core.definition import TaskDef
from deerflow.core.state import RunState, TaskState


def generation(state: RunState) -> tuple[str, ...]:
    """An id suffix for events a retried run may emit again (``retry1``, ...).

    Without it, the second ``RunFailed`` of a retried run would share the first one's id, and a
    late duplicate of the first could end the retried run.
    """
    return (f"retry{state.retries}",) if state.retries else ()


def schedule(
    run_id: str, task_id: str, attempt: int, now: float, *, fallback: bool = False
) -> h.TaskScheduled:
    """The event that dispatches ``attempt`` of ``task_id``."""
    return h.TaskScheduled(
        id=h.event_id(run_id, task_id, attempt, "scheduled"),
        run_id=run_id,
        ts=now,
        task_id=task_id,
        attempt=attempt,
        fallback=fallback,
    )


def _next_attempt(
    task: TaskDef,
    task_id: str,
    state: RunState,
    attempt: int,
    now: float,
    *,
    fallback: bool = False,
) -> list[h.HistoryEvent]:
    events: list[h.HistoryEvent] = [
        schedule(state.run_id, task_id, attempt, now, fallback=fallback)
    ]
    if task_id == task.id and not fallback:
        events.extend(task.kind.on_scheduled(task, state, attempt, now))
    return events


def on_failed_attempt(
    task: TaskDef, task_id: str, ts: TaskState, state: RunState, now: float
) -> list[h.HistoryEvent]:
    """Retry (at once or on a durable timer), fall back, or give the task up.

    ``task`` is the definition whose policy applies: the task itself, or for a child of a
    node with children, the node (children have no fallback of their own).
    """
    run_id = state.run_id
    nxt = ts.attempts + 1
    # attempt_base: an operator retry gives the task its whole retry budget again
    if not ts.fallback and ts.retriable and ts.attempts - ts.attempt_base < task.retry.max_attempts:
        if ts.timer_id is None:
            delay = ts.next_retry_delay
            if delay is None:
                delay = task.retry.delay_before(nxt - ts.attempt_base)
            if delay <= 0:
                return _next_attempt(task, task_id, state, nxt, now)
            timer_id = f"retry:{task_id}:{nxt}"
            return [
                h.timer_started(
                    run_id,
                    timer_id,
                    (ts.failed_at or now) + delay,
                    now,
                    task_id=task_id,
                    attempt=nxt,
                )
            ]
        if ts.timer_id not in state.timers:  # the timer fired
            return _next_attempt(task, task_id, state, nxt, now)
        return []
    if not ts.fallback and task.fallback is not None and task_id == task.id:
        return _next_attempt(task, task_id, state, nxt, now, fallback=True)
    return [
        h.TaskAbandoned(
            id=h.event_id(run_id, task_id, "abandoned", *generation(state)),
            run_id=run_id,
            ts=now,
            task_id=task_id,
            error=ts.error or "failed",
        )
    ]


def within_budget(events: list[h.HistoryEvent], budget: int) -> tuple[list[h.HistoryEvent], int]:
    """Keep at most ``budget`` dispatches (and the runs they start); the rest wait.

    Dropped schedules are decided again on a later event, when slots are free: the decider is
    stateless, so nothing is lost. Returns the kept events and the budget left.
    """
    kept: list[h.HistoryEvent] = []
    dropped: set[tuple[str, int]] = set()
    for event in events:
        if isinstance(event, h.TaskScheduled):
            if budget <= 0:
                dropped.add((event.task_id, event.attempt))
                continue
            budget -= 1
        elif (
            isinstance(event, h.RunRequested)
            and event.parent is not None
            and (event.parent.task_id, event.parent.attempt) in dropped
        ):
            continue
        kept.append(event)
    return kept, budget
