"""Deciding a state-machine instance: apply requested transitions one at a time, in order.

The head request is checked against the current state: refused at once if not allowed,
applied at once if no user code is attached, else its handler runs as the task
``transition@seq`` (with the machine's retry policy). Its outcome applies or fails the
transition. A final state completes the run.
"""

from __future__ import annotations

from typing import Any

from deerflow.core import RunState, TaskState, WorkflowDef
from deerflow.core import history as h
from deerflow.core.decide_nodes import on_failed_attempt, schedule
from deerflow.core.state import COMPLETED, FAILED, PENDING, RETRY_WAIT
from deerflow.statemachine._fold import (
    TransitionApplied,
    TransitionFailed,
    TransitionRejected,
    head_request,
)
from deerflow.statemachine._model import MachineSpec

_EMPTY = TaskState()


def transition_task_id(request: dict[str, Any]) -> str:
    """The id of the task that runs a request's handler."""
    return f"{request['transition']}@{request['request_id']}"


def decide_machine(
    wf: WorkflowDef, spec: MachineSpec, state: RunState, now: float
) -> list[h.HistoryEvent]:
    """The next events of a state-machine instance."""
    run_id = state.run_id
    if state.machine_state is None:
        return [
            TransitionApplied(
                id=h.event_id(run_id, "start"),
                run_id=run_id,
                ts=now,
                request_id="start",
                transition="",
                source=None,
                target=spec.initial,
            )
        ]
    if spec.is_final(state.machine_state):
        return [
            h.RunCompleted(
                id=h.event_id(run_id, "completed"),
                run_id=run_id,
                ts=now,
                output={"state": state.machine_state},
            )
        ]
    request = head_request(state)
    if request is None:
        return []
    refusal = spec.refusal(request["transition"], state.machine_state)
    ident = (run_id, "tr", request["request_id"])
    if refusal is not None:
        return [
            TransitionRejected(
                id=h.event_id(*ident, "rejected"),
                run_id=run_id,
                ts=now,
                request_id=request["request_id"],
                transition=request["transition"],
                reason=refusal,
            )
        ]
    if not spec.needs_task(request["transition"]):
        return [_applied(spec, state, request, now)]
    return _handler_step(wf, spec, state, request, now)


def _handler_step(
    wf: WorkflowDef, spec: MachineSpec, state: RunState, request: dict[str, Any], now: float
) -> list[h.HistoryEvent]:
    task_id = transition_task_id(request)
    task = state.tasks.get(task_id, _EMPTY)
    if task.status == PENDING:
        return [schedule(state.run_id, task_id, 1, now)]
    if task.status == RETRY_WAIT:
        return on_failed_attempt(wf.get(task_id), task_id, task, state, now)
    if task.status == COMPLETED:
        return [_applied(spec, state, request, now)]
    if task.status == FAILED:
        return [
            TransitionFailed(
                id=h.event_id(state.run_id, "tr", request["request_id"], "failed"),
                run_id=state.run_id,
                ts=now,
                request_id=request["request_id"],
                transition=request["transition"],
                error=task.error or "handler failed",
            )
        ]
    return []  # the handler is running


def _applied(
    spec: MachineSpec, state: RunState, request: dict[str, Any], now: float
) -> TransitionApplied:
    return TransitionApplied(
        id=h.event_id(state.run_id, "tr", request["request_id"], "applied"),
        run_id=state.run_id,
        ts=now,
        request_id=request["request_id"],
        transition=request["transition"],
        source=state.machine_state,
        target=spec.target(request["transition"]),
    )
