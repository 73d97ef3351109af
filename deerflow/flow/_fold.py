"""The flow-control part of a run's history: its events and their fold.

A run of a workflow with flow control records, as its owner first decides it:

* :class:`RunQueued`: the run waits for its gate (its key and limits, which the gate reads);
  its owner decides nothing more until
* :class:`RunAdmitted`, appended by the gate holding the key (its id is the run's: a gate
  rebuilt after a takeover admits it again to no effect), possibly with ``not_before`` (a
  rate limit's window: the owner waits on a durable timer), or
* :class:`RunDropped`, appended by the gate when a rate limit with ``on_excess="drop"`` is
  exceeded: the run ends ``dropped``, the reason in its history; or
* :class:`RunSuperseded`, appended by the gate when a newer run of the key comes within a
  debounce period: the run ends ``superseded`` (the newer one carries on); with a concurrency
  or rate limit too, the burst's latest run is :class:`RunDebounced` first, and queues for a
  slot once its debounce is over.

When an admitted or queued run ends, its owner records :class:`FlowReleased` just before the
terminal event (``WorkflowDef.on_ending``): the gate frees the run's slot or queue place.
"""

from __future__ import annotations

from typing import Any, Literal

from deerflow.core import FoldExtension, RunState
from deerflow.core import history as h
from deerflow.core.state import RUN_RUNNING, end_run
from deerflow.runtime.plugins import FoldsPlugin

#: the status of a run a rate limit dropped
RUN_DROPPED = "dropped"
#: the status of a run a newer one of its key superseded (debounce)
RUN_SUPERSEDED = "superseded"
#: the status of a run another run of its batch took
RUN_BATCHED = "batched"
#: what a run waiting for its gate shows as its status
RUN_QUEUED = "queued"


class RunQueued(h.HistoryEvent):
    """The run waits for its gate's admission.

    ``key`` is the gate's key (``<workflow>/<key value>``); ``limits`` what the gate applies
    (see :meth:`~deerflow.flow._spec.FlowSpec.limits`); ``priority``: higher is admitted first.
    """

    type: Literal["RunQueued"] = "RunQueued"
    workflow: str
    key: str
    limits: dict[str, Any]
    priority: int = 0
    #: when the run was requested: its place in its key's queue
    requested_at: float = 0.0
    #: a batched workflow's run: what it brings to its batch (trigger event, params, input)
    member: dict[str, Any] | None = None
    #: the operator's retry of the run it queues for (0: its first try)
    retry: int = 0
    #: a sub-workflow run: the parent's task, told when the gate ends the run
    parent: h.ParentRef | None = None
    #: which of the workflow's gates (a concurrency limit and a rate limit of another key:
    #: 0 the concurrency gate, 1 the rate limit's, once the first admitted the run)
    stage: int = 0
    #: how many gates the run passes (2: a concurrency limit, then a rate limit of its own key)
    stages: int = 1
    #: a later stage: the key of the gate before, whose slot the run holds (freed by the
    #: gate that drops the run)
    prior: str | None = None


class RunAdmitted(h.HistoryEvent):
    """The gate admitted the run: it starts (at ``not_before``, when a rate limit delays it)."""

    type: Literal["RunAdmitted"] = "RunAdmitted"
    not_before: float | None = None
    #: how long it waited in its key's queue (seconds, by the records' times)
    waited: float = 0.0


class RunDropped(h.HistoryEvent):
    """The gate dropped the run (a rate limit's ``on_excess="drop"``): it ends ``dropped``."""

    type: Literal["RunDropped"] = "RunDropped"
    reason: str


class RunSuperseded(h.HistoryEvent):
    """A newer run of its key came within the debounce period: it ends ``superseded``."""

    type: Literal["RunSuperseded"] = "RunSuperseded"
    reason: str
    by: str


class RunDebounced(h.HistoryEvent):
    """The run is its burst's latest (debounce with a concurrency or rate limit): unless a
    newer run supersedes it, at ``not_before`` it queues for its key's slot (``BatchDue``)."""

    type: Literal["RunDebounced"] = "RunDebounced"
    not_before: float


class BatchJoined(h.HistoryEvent):
    """A run joined the batch this run takes: ``member`` is what it brings."""

    type: Literal["BatchJoined"] = "BatchJoined"
    member: dict[str, Any]


class RunBatched(h.HistoryEvent):
    """The run joined the batch of run ``into``: it ends ``batched`` (that run takes it)."""

    type: Literal["RunBatched"] = "RunBatched"
    into: str


class BatchDue(h.HistoryEvent):
    """The run waited its batch's timeout (or its debounce): the gate closes its batch (if it
    leads one), or queues it for a slot (if it is still its burst's latest)."""

    type: Literal["BatchDue"] = "BatchDue"
    key: str


class FlowReleased(h.HistoryEvent):
    """The run ends: its slot (or its place in the queue) at the gate is free."""

    type: Literal["FlowReleased"] = "FlowReleased"
    key: str
    #: the operator's retry of the run it releases the slot of (0: its first try)
    retry: int = 0
    #: the gate it frees a slot at (see :attr:`RunQueued.stage`)
    stage: int = 0


#: what a gate appends to a run id to name a retry of the run (its own place in the queue)
RETRY_MARK = "#retry"
#: what names a run at the workflow's second gate (its rate limit of a key of its own)
STAGE_MARK = "#then"


def gate_run(run_id: str, retry: int = 0, stage: int = 0) -> str:
    """The name a gate knows a try of a run by: the run id, a retry's number appended (and
    a mark at a workflow's second gate)."""
    name = f"{run_id}{RETRY_MARK}{retry}" if retry else run_id
    return f"{name}{STAGE_MARK}" if stage else name


def run_of(name: str) -> tuple[str, int, int]:
    """The run id, retry number and stage of a gate's name for a try (see :func:`gate_run`)."""
    stage = 1 if name.endswith(STAGE_MARK) else 0
    if stage:
        name = name[: -len(STAGE_MARK)]
    run_id, mark, retry = name.rpartition(RETRY_MARK)
    return (run_id, int(retry), stage) if mark and retry.isdigit() else (name, 0, stage)


def _tried(run_id: str, what: str, retry: int, stage: int = 0) -> str:
    return h.event_id(
        run_id, "flow", what, *(("retry", retry) if retry else ()), *(("then",) if stage else ())
    )


def queued_id(run_id: str, retry: int = 0, stage: int = 0) -> str:
    """The id of a run's :class:`RunQueued` (one per try and gate)."""
    return _tried(run_id, "queued", retry, stage)


def admitted_id(run_id: str, retry: int = 0, stage: int = 0) -> str:
    """The id of a run's :class:`RunAdmitted` (one per try and gate, whichever gate process
    decides it)."""
    return _tried(run_id, "admitted", retry, stage)


def dropped_id(run_id: str, retry: int = 0) -> str:
    """The id of a run's :class:`RunDropped`."""
    return _tried(run_id, "dropped", retry)


def superseded_id(run_id: str) -> str:
    """The id of a run's :class:`RunSuperseded`."""
    return h.event_id(run_id, "flow", "superseded")


def debounced_id(run_id: str) -> str:
    """The id of a run's :class:`RunDebounced`."""
    return h.event_id(run_id, "flow", "debounced")


def joined_id(run_id: str, member: str) -> str:
    """The id of the :class:`BatchJoined` recording ``member`` in ``run_id``'s batch."""
    return h.event_id(run_id, "flow", "joined", member)


def batched_id(run_id: str) -> str:
    """The id of a run's :class:`RunBatched`."""
    return h.event_id(run_id, "flow", "batched")


def due_id(run_id: str) -> str:
    """The id of a run's :class:`BatchDue`."""
    return h.event_id(run_id, "flow", "due")


def released_id(run_id: str, retry: int = 0, stage: int = 0) -> str:
    """The id of a run's :class:`FlowReleased` (one per try and gate)."""
    return _tried(run_id, "released", retry, stage)


class FlowFold(FoldExtension):
    """Keeps a run's gate state under ``flow``: key, queued/admitted, its delay, released."""

    key = "flow"
    event_classes = (
        RunQueued,
        RunAdmitted,
        RunDropped,
        RunSuperseded,
        FlowReleased,
        BatchJoined,
        RunBatched,
        BatchDue,
        RunDebounced,
    )
    terminal = frozenset({"RunDropped", "RunSuperseded", "RunBatched"})
    attributes = frozenset({"flow_status"})
    live_statuses = frozenset({RUN_QUEUED})

    def fold(self, state: RunState, event: h.HistoryEvent) -> bool:
        """Apply one flow event; a repeat (or one out of its order) changes nothing."""
        part = self.part(state)
        if isinstance(event, RunQueued):
            return _queued(part, event)
        if isinstance(event, RunAdmitted):
            if part.get("status") != RUN_QUEUED:
                return False
            part.update(status="admitted", admitted_at=event.ts)
            if event.not_before is not None:
                part["not_before"] = event.not_before
            return True
        if isinstance(event, FlowReleased):
            done = "released" if event.stage == 0 else "released_then"
            if part.get(done):
                return False
            part[done] = True
            return True
        if isinstance(event, RunDropped | RunSuperseded | RunBatched):
            return _ended_by_gate(state, part, event)
        return _batch(part, event)

    def shown_status(self, state: RunState) -> str | None:
        """``queued`` while the run waits for its gate."""
        return RUN_QUEUED if waits_for_gate(state) else None

    def result_fields(self, state: RunState) -> dict[str, Any]:
        """``RunResult.flow``: the run's key and where it stands at its gate."""
        part = state.extensions.get(self.key)
        return {"flow": dict(part)} if part else {}

    def attribute(self, state: RunState, name: str) -> Any:
        """``state.flow_status``: ``queued``, ``admitted``, ``dropped`` or ``None`` (no gate)."""
        part = state.extensions.get(self.key)
        return None if part is None else part.get("status")


def _queued(part: dict[str, Any], event: RunQueued) -> bool:
    """The run queues at its gate: first, at its workflow's next gate once the first admitted
    it, or again for an operator's retry."""
    if "key" in part and event.retry <= part.get("retry", 0):
        if event.retry < part.get("retry", 0) or event.stage <= part.get("stage", 0):
            return False
        if part.get("status") != "admitted" or part.get("released"):
            return False
        part.update(
            keys=[*part.get("keys", [part["key"]]), event.key],
            key=event.key,
            stage=event.stage,
            status=RUN_QUEUED,
        )
        part.pop("not_before", None)
        return True
    if event.retry:  # the first try's part is done with, but the runs of its batch
        batch = part.get("batch")
        part.clear()
        part["retry"] = event.retry
        if batch is not None:
            part["batch"] = batch
    part.update(key=event.key, status=RUN_QUEUED, queued_at=event.ts)
    if event.stages > 1:
        part["stages"] = event.stages
    if event.priority:
        part["priority"] = event.priority
    return True


def _batch(part: dict[str, Any], event: h.HistoryEvent) -> bool:
    """A run joined this run's batch, this run's batch timeout (or debounce) passed, or it
    waits for its debounce to pass."""
    if isinstance(event, RunDebounced):
        if part.get("status") != RUN_QUEUED or "due_at" in part:
            return False
        part["due_at"] = event.not_before
        return True
    if isinstance(event, BatchDue):
        if part.get("due"):
            return False
        part["due"] = True
        return True
    if isinstance(event, BatchJoined):
        members: list[dict[str, Any]] = part.setdefault("batch", [])
        if any(m.get("run_id") == event.member.get("run_id") for m in members):
            return False
        members.append(event.member)
        return True
    return False


def _ended_by_gate(
    state: RunState, part: dict[str, Any], event: RunDropped | RunSuperseded | RunBatched
) -> bool:
    """The gate ended the run: ``dropped`` (a rate limit), ``superseded`` (debounce) or
    ``batched`` (another run of its batch takes it)."""
    if isinstance(event, RunBatched):
        part.update(status=RUN_BATCHED, batched_into=event.into)
        return end_run(state, RUN_BATCHED, event.ts, error=f"in the batch of run {event.into}")
    if isinstance(event, RunSuperseded):
        part.update(status=RUN_SUPERSEDED, superseded_by=event.by)
        return end_run(state, RUN_SUPERSEDED, event.ts, error=event.reason)
    part["status"] = RUN_DROPPED
    return end_run(state, RUN_DROPPED, event.ts, error=event.reason)


def waits_for_gate(state: RunState) -> bool:
    """Whether ``state`` is a running run its gates have not all admitted yet."""
    part = state.extensions.get(FlowFold.key)
    if part is None or state.status != RUN_RUNNING:
        return False
    return part.get("status") == RUN_QUEUED or int(part.get("stage", 0)) + 1 < int(
        part.get("stages", 1)
    )


FLOW_FOLD = FlowFold()
# Histories are read without their definitions (a CLI, the run index).
#: Histories are folded without their definitions (a CLI, the run index): every engine adopts
#: this plugin (``deerflow.workflow.DEFAULT_PLUGINS``), whatever workflows it serves.
FLOW_PLUGIN = FoldsPlugin(FLOW_FOLD)
