"""The fold of the core's run events: its request, its end, parking, cancels, retries and
search attributes.

Each function applies one event type to a run state in place and returns whether it changed
anything; :data:`APPLY` names them by event type for :func:`deerflow.core.fold.fold`.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from deerflow.core import history as h
from deerflow.core.sharing import shared_shape
from deerflow.core.state import (
    EXPANDED,
    FAILED,
    PENDING,
    RUN_CANCELLED,
    RUN_COMPLETED,
    RUN_FAILED,
    RUN_RUNNING,
    SKIPPED,
    Expansion,
    RunState,
    TaskState,
)


def _run_requested(state: RunState, e: h.RunRequested) -> bool:
    if state.requested:
        return False
    state.requested = True
    # Interned: many runs of few workflows, each held for as long as it runs (or waits).
    state.workflow = sys.intern(e.workflow)
    state.version = sys.intern(e.version)
    state.fingerprint = sys.intern(e.fingerprint)
    state.shape = shared_shape(state.fingerprint, e.shape)
    state.params = dict(e.params)
    state.input = e.input
    state.trigger = e.trigger
    state.parent = e.parent
    state.correlation_id = e.correlation_id
    state.traceparent = e.traceparent
    state.priority = e.priority
    state.started_at = e.ts
    return True


def _run_completed(state: RunState, e: h.RunCompleted) -> bool:
    state.status = RUN_COMPLETED
    state.output = e.output
    state.finished_at = e.ts
    return True


def _run_failed(state: RunState, e: h.RunFailed) -> bool:
    return end_run(state, RUN_FAILED, e.ts, error=e.error, failed_task=e.failed_task)


def end_run(
    state: RunState,
    status: str,
    ts: float,
    *,
    error: str | None = None,
    failed_task: str | None = None,
) -> bool:
    """End the run in error with ``status`` (extensions' terminal events fold through this)."""
    state.status = status
    state.error = error
    state.failed_task = failed_task
    state.finished_at = ts
    return True


def _run_parked(state: RunState, e: h.RunParked) -> bool:
    if state.parked == e.reason:
        return False
    state.parked = e.reason
    state.parks += 1
    return True


def _run_resumed(state: RunState, e: h.RunResumed) -> bool:
    if state.parked is None:
        return False
    state.parked = None
    return True


def _cancel_requested(state: RunState, e: h.RunCancelRequested) -> bool:
    if state.cancel_requested:
        return False
    state.cancel_requested = True
    state.error = e.reason
    return True


def _run_cancelled(state: RunState, e: h.RunCancelled) -> bool:
    state.status = RUN_CANCELLED
    state.error = e.reason
    state.finished_at = e.ts
    state.timers.clear()
    return True


def next_retry(state: RunState) -> int:
    """The number of the ``RunRetryRequested`` that would reopen the run; 0: none would.

    Only a failed run is retried, and only by its next retry: stale or repeated requests
    change nothing. (Tombstones of ended runs keep this number instead of the state.)
    """
    return state.retries + 1 if state.status == RUN_FAILED else 0


def _run_retry_requested(state: RunState, e: h.RunRetryRequested) -> bool:
    """Reopen a failed run: failed and skipped tasks become pending again.

    Outputs of completed tasks are kept, so the run goes on from the failed task. Events the
    decider emits again after a retry carry the retry's generation in their ids, so ids stay
    unique and a late duplicate of an event of the first try stays ignored.
    """
    if e.retry != next_retry(state):
        return False
    state.retries = e.retry
    reopened: list[Expansion] = []
    for task in state.tasks.values():
        if task.status not in (FAILED, SKIPPED):
            continue
        _reopen_task(task)
        if task.expansion is not None:
            task.status = EXPANDED  # the plan stands: only its failed children run again
            task.expansion.failed = None
            reopened.append(task.expansion)
    for exp in reopened:
        # Rebuilt, not patched: skipped children may still sit in ``ready`` from before.
        exp.ready = deque(
            c for c in exp.children if state.tasks[c].status == PENDING and exp.waiting_on[c] == 0
        )
    state.status = RUN_RUNNING
    state.error = state.failed_task = state.finished_at = None
    state.output = None
    return True


def _reopen_task(task: TaskState) -> None:
    task.status = PENDING
    task.attempt_base = task.attempts
    task.fallback = False
    task.error = task.error_type = task.traceback = None
    task.retriable = True
    task.next_retry_delay = task.failed_at = task.finished_at = None
    task.timer_id = task.fire_at = None


def _search_attributes_set(state: RunState, e: h.SearchAttributesSet) -> bool:
    before = dict(state.search_attributes)
    for name, typed in e.attributes.items():
        state.search_attributes[name] = _typed(typed)
    return state.search_attributes != before


def _typed(typed: dict[str, Any]) -> Any:
    """A search attribute's value as recorded: a datetime comes back as one (UTC)."""
    kind, value = typed.get("kind"), typed.get("value", 0)
    if kind == "datetime":
        return datetime.fromtimestamp(float(value), UTC)
    if kind == "bool":
        return bool(value)
    if kind == "float":
        return float(value)  # 2.0 reads back from JSON as 2
    return value


#: what folds each of the core's run events, by type
APPLY: dict[str, Callable[[RunState, Any], bool]] = {
    "RunRequested": _run_requested,
    "RunCompleted": _run_completed,
    "RunFailed": _run_failed,
    "RunCancelRequested": _cancel_requested,
    "RunParked": _run_parked,
    "RunResumed": _run_resumed,
    "RunCancelled": _run_cancelled,
    "RunRetryRequested": _run_retry_requested,
    "SearchAttributesSet": _search_attributes_set,
}
