"""Decisions for one node: retries, expanded nodes (children) and sub-workflow child runs."""

from __future__ import annotations

from itertools import islice
from typing import Any

from deerflow.core import _history as h
from deerflow.core._definition import TaskDef
from deerflow.core._state import PENDING, RETRY_WAIT, RunState, TaskState
from deerflow.core._traceparent import run_traceparent


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
    if task.kind == "subworkflow" and task_id == task.id and not fallback:
        events.append(start_child_run(task, state, attempt, now))
    return events


def on_failed_attempt(
    task: TaskDef, task_id: str, ts: TaskState, state: RunState, now: float
) -> list[h.HistoryEvent]:
    """Retry (at once or on a durable timer), fall back, or give the task up.

    ``task`` is the definition whose policy applies: the task itself, or for a child of an
    expanded node, the node (children have no fallback of their own).
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
                h.TimerStarted(
                    id=h.event_id(run_id, timer_id, "started"),
                    run_id=run_id,
                    ts=now,
                    timer_id=timer_id,
                    task_id=task_id,
                    attempt=nxt,
                    fire_at=(ts.failed_at or now) + delay,
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


def on_expanded(
    node: TaskDef, ts: TaskState, state: RunState, now: float, *, budget: int | None = None
) -> list[h.HistoryEvent]:
    """Schedule ready children up to ``max_parallel``, retry failed ones, collect when done.

    ``budget`` (the run's free slots under ``Workflow(max_parallel=...)``) caps new children
    too, so a node with 10,000 ready children costs O(budget), not O(children), per decision.
    """
    exp = ts.expansion
    assert exp is not None
    run_id = state.run_id
    if exp.failed is not None:
        return _fail_expansion(node, ts, state, now)
    events: list[h.HistoryEvent] = []
    for child in sorted(exp.retrying):
        events.extend(on_failed_attempt(node, child, state.tasks[child], state, now))
    if exp.done:
        expander = node.options["expander"]
        specs = [exp.specs[c] for c in exp.children]
        outputs = [state.tasks[c].output for c in exp.children]
        events.append(
            h.TaskCollected(
                id=h.event_id(run_id, node.id, "collected"),
                run_id=run_id,
                ts=now,
                task_id=node.id,
                output=expander.collect(specs, outputs),
            )
        )
        return events
    limit = node.options["expander"].max_parallel
    capacity = len(exp.ready) if limit is None else max(0, limit - exp.running)
    if budget is not None:
        capacity = min(capacity, max(0, budget))
    events.extend(
        schedule(run_id, child, state.tasks[child].attempts + 1, now)
        for child in islice(exp.ready, capacity)
    )
    return events


def _fail_expansion(
    node: TaskDef, ts: TaskState, state: RunState, now: float
) -> list[h.HistoryEvent]:
    exp = ts.expansion
    assert exp is not None and exp.failed is not None
    run_id = state.run_id
    waiting = [c for c in exp.children if state.tasks[c].status in (PENDING, RETRY_WAIT)]
    if waiting:
        reason = f"sibling {exp.failed!r} failed"
        suffix = generation(state)
        return [
            h.TaskSkipped(
                id=h.event_id(run_id, c, "skipped", *suffix),
                run_id=run_id,
                ts=now,
                task_id=c,
                reason=reason,
            )
            for c in waiting
        ]
    if exp.running > 0:
        return []  # children still running: the node fails when they are done
    error = f"child {exp.failed!r} failed: {state.tasks[exp.failed].error}"
    return [
        h.TaskAbandoned(
            id=h.event_id(run_id, node.id, "abandoned", *generation(state)),
            run_id=run_id,
            ts=now,
            task_id=node.id,
            error=error,
        )
    ]


def child_run_id(parent_run_id: str, task_id: str, attempt: int) -> str:
    """The run id of a sub-workflow's child run for one attempt of its node."""
    return f"{parent_run_id}.{task_id}.{attempt}"


def start_child_run(task: TaskDef, state: RunState, attempt: int, now: float) -> h.RunRequested:
    """The ``RunRequested`` of a sub-workflow node's child run (an outbox event)."""
    child = task.options["workflow"]
    rid = child_run_id(state.run_id, task.id, attempt)
    return h.RunRequested(
        id=h.event_id(rid, "requested"),
        run_id=rid,
        ts=now,
        workflow=child.name,
        version=child.version,
        fingerprint=child.fingerprint(),
        shape=child.shape(),
        params=state.params,
        input=child_input(task, state),
        parent=h.ParentRef(run_id=state.run_id, task_id=task.id, attempt=attempt),
        correlation_id=state.correlation_id or state.run_id,
        # The child's spans belong to the parent's trace, under the parent run's span.
        traceparent=run_traceparent(state.run_id, state.trigger, state.traceparent),
    )


def child_input(task: TaskDef, state: RunState) -> Any:
    """A child run's input: the upstream output (a dict by id for several), else the run's."""
    source = task.options.get("input_from")
    deps = [source] if source else list(task.depends_on)
    if not deps:
        return state.input
    if len(deps) == 1:
        return state.tasks[deps[0]].output
    return {dep: state.tasks[dep].output for dep in deps}


def within_budget(events: list[h.HistoryEvent], budget: int) -> tuple[list[h.HistoryEvent], int]:
    """Keep at most ``budget`` dispatches (and the child runs of kept ones); the rest wait.

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
