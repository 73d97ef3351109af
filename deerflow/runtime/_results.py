"""What users get back about a run: ``RunResult`` and ``TaskResult``, built from folded state."""

from __future__ import annotations

from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from deerflow.core import state as s
from deerflow.core.change import PARKED
from deerflow.core.definition import WorkflowDef
from deerflow.errors import RunFailed

_TASK_STATUS = {
    s.PENDING: "pending",
    s.SCHEDULED: "running",
    s.RETRY_WAIT: "retrying",
    s.COMPLETED: "completed",
    s.FAILED: "failed",
    s.SKIPPED: "skipped",
}


class TaskResult(BaseModel):
    """One task of a run.

    ``status`` is pending, running, retrying, completed, failed or skipped, or a status of
    the node's kind (``waiting``: a sleep, a wait for a signal or an event, or an object
    sensor between two checks, ``next_attempt_at`` being its next check).
    """

    model_config = ConfigDict(frozen=True)

    status: str
    output: Any = None
    error: str | None = None
    error_type: str | None = None
    traceback: str | None = None
    attempts: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    next_attempt_at: float | None = None


class RunResult(BaseModel):
    """A run as its history tells it.

    ``status`` is running, completed, failed, cancelled (and, for sagas, compensated or
    compensation_failed), or parked: the run waits because the definition its owner loaded
    differs from the one it started on, as the owner recorded in the history (``error`` says
    what changed; loading that version again lets it go on, or cancel it). ``output`` is the
    sink task's output, or a dict by task id when the workflow has several sinks.
    ``search_attributes`` are those its tasks set (``context.set_search_attributes``), which
    ``list_runs(attributes=...)`` filters on.

    ``extras`` holds what the features' fold extensions add to a run's result
    (``FoldExtension.result_fields``), read as ``result.extras[name]``; serialised, they sit
    beside the other fields, and a result read back from JSON has them in ``extras`` again. A
    state machine adds two, also read as properties: :attr:`state`, an instance's current
    state, and :attr:`transitions`, its transition history (applied, rejected and failed
    requests). Flow control adds :attr:`flow`, where a run stands at its gate (``key``;
    ``status``: queued, admitted, dropped, superseded or batched; when it queued and was
    admitted; ``not_before`` when a rate limit or debounce delays it); a queued run's
    ``status`` is ``queued``.
    """

    model_config = ConfigDict(frozen=True)

    run_id: str
    workflow: str
    version: str = "1"
    status: str
    output: Any = None
    error: str | None = None
    failed_task: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    input: Any = None
    trigger: dict[str, Any] | None = None
    parent_run_id: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    tasks: dict[str, TaskResult] = Field(default_factory=dict)
    events: int = 0
    search_attributes: dict[str, Any] = Field(default_factory=dict)
    #: what fold extensions add (``FoldExtension.result_fields``), by field name
    extras: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _gather_extras(cls, data: Any) -> Any:
        """Keys that are no field of the model are extension fields (``state=...``, or a
        result read back from its JSON): they go to ``extras``."""
        if not isinstance(data, dict):
            return data
        fields = _RESULT_FIELDS
        added = {k: v for k, v in data.items() if k not in fields}
        if not added:
            return data
        kept = {k: v for k, v in data.items() if k in fields}
        kept["extras"] = {**added, **dict(kept.get("extras") or {})}
        return kept

    @model_serializer(mode="wrap")
    def _flatten_extras(
        self, handler: SerializerFunctionWrapHandler, info: SerializationInfo
    ) -> Any:
        """Serialised, extension fields sit beside the others (as ``state`` always did)."""
        data = handler(self)
        if isinstance(data, dict) and "extras" in data:
            extras = data.pop("extras") or {}
            data.update({k: v for k, v in extras.items() if k not in data})
        return data

    @property
    def state(self) -> str | None:
        """A state-machine instance's current state (``None``: not an instance)."""
        value = self.extras.get("state")
        return None if value is None else str(value)

    @property
    def transitions(self) -> list[dict[str, Any]]:
        """A state-machine instance's transition history, oldest first (empty otherwise)."""
        return list(self.extras.get("transitions") or [])

    @property
    def flow(self) -> dict[str, Any] | None:
        """Where a run of a workflow with flow control stands at its gate (``None``: none)."""
        value = self.extras.get("flow")
        return None if value is None else dict(value)

    @property
    def ok(self) -> bool:
        """Whether the run completed."""
        return self.status == "completed"

    @property
    def done(self) -> bool:
        """Whether the run has ended, whichever way (a parked or a queued run has not)."""
        return self.status != PARKED and self.status not in s.LIVE_STATUSES

    def raise_for_status(self) -> RunResult:
        """Return ``self`` if completed, else raise :class:`deerflow.errors.RunFailed`."""
        if not self.ok:
            raise RunFailed(
                f"run {self.run_id} of {self.workflow!r} {self.status}: {self.error}",
                run_id=self.run_id,
                status=self.status,
            )
        return self


#: RunResult's own fields (read at each validation: the class property costs a call)
_RESULT_FIELDS = frozenset(RunResult.model_fields)


def task_result(ts: s.TaskState, waits: bool = False) -> TaskResult:
    """A task's public view; ``waits``: the node waits on something (:func:`s.waits_of`), so
    a retry timer between two of its checks (an object sensor's) shows as ``waiting``."""
    status = _TASK_STATUS.get(ts.status, ts.status)
    return TaskResult(
        status="waiting" if waits and ts.status == s.RETRY_WAIT else status,
        output=ts.output,
        error=ts.error,
        error_type=ts.error_type,
        traceback=ts.traceback,
        attempts=ts.attempts,
        started_at=ts.started_at,
        finished_at=ts.finished_at,
        next_attempt_at=ts.fire_at if ts.status == s.RETRY_WAIT else None,
    )


def run_result(state: s.RunState, wf: WorkflowDef | None = None) -> RunResult:
    """A run's public view; tasks in definition order when the definition is known."""
    order = list(wf.order) if wf is not None else []
    order += [tid for tid in state.tasks if tid not in order]
    waits = s.waits_of(state)
    tasks = {
        tid: task_result(state.tasks[tid], tid in waits)
        if tid in state.tasks
        else TaskResult(status="pending")
        for tid in order
    }
    # Parked as the run's owner recorded it: the definition loaded here may not be the owner's.
    parked = state.parked if not state.terminal else None
    return RunResult(
        run_id=state.run_id,
        workflow=state.workflow,
        version=state.version,
        status=PARKED if parked else s.status_of(state),
        output=state.output,
        error=parked or (state.error if state.status != s.RUN_COMPLETED else None),
        failed_task=state.failed_task,
        params=state.params,
        input=state.input,
        trigger=state.trigger,
        parent_run_id=state.parent.run_id if state.parent else None,
        started_at=state.started_at,
        finished_at=state.finished_at,
        tasks=tasks,
        events=state.events,
        search_attributes=dict(state.search_attributes),
        extras=s.result_fields(state),
    )
