"""The state-machine part of the history: its events, and how they fold into an instance's
state, its queued requests and its record.

Kept in ``state.extensions["machine"]`` as JSON-like data::

    {"state": "pending" | None,
     "requests": [{"request_id": ..., "transition": ..., "payload": ...}, ...],
     "transitions": [{"request_id", "transition", "source", "target", "status", "ts", ...}]}

Requests resolve strictly in order: an applied, rejected or failed transition resolves the
head request only. ``RunState.machine_state`` and ``RunState.transitions`` read this part.
"""

from __future__ import annotations

from typing import Any, Literal

from deerflow.core import FoldExtension, RunState
from deerflow.core import history as h
from deerflow.errors import TaskError, TransitionNotAllowed
from deerflow.runtime.plugins import FoldsPlugin

KEY = "machine"


class TransitionRequested(h.HistoryEvent):
    """Someone asked a state-machine instance to take ``transition``."""

    type: Literal["TransitionRequested"] = "TransitionRequested"
    request_id: str
    transition: str
    payload: Any = None


class TransitionApplied(h.HistoryEvent):
    """The instance moved from ``source`` to ``target`` (``source`` is None when it starts)."""

    type: Literal["TransitionApplied"] = "TransitionApplied"
    request_id: str
    transition: str
    source: str | None
    target: str


class TransitionRejected(h.HistoryEvent):
    """A requested transition was not allowed in the instance's state; nothing changed."""

    type: Literal["TransitionRejected"] = "TransitionRejected"
    request_id: str
    transition: str
    reason: str


class TransitionFailed(h.HistoryEvent):
    """A transition's handler failed for good; the instance stays in its source state."""

    type: Literal["TransitionFailed"] = "TransitionFailed"
    request_id: str
    transition: str
    error: str


class MachineFold(FoldExtension):
    """Folds ``Transition*`` events into the instance's part of the run state."""

    key = KEY
    event_classes = (TransitionRequested, TransitionApplied, TransitionRejected, TransitionFailed)
    #: read as ``state.machine_state`` and ``state.transitions`` (run index predicates, tests)
    attributes = frozenset({"machine_state", "transitions"})
    #: ``list_runs(state=...)``: the run index keeps an instance's current state
    indexed = {"state": "state"}

    def attribute(self, state: RunState, name: str) -> Any:
        """An instance's state (``None``: not started, or not an instance), or its resolved
        requests in order (applied, rejected, failed)."""
        part = state.extensions.get(KEY, {})
        if name == "machine_state":
            return part.get("state")
        return part.get("transitions", [])

    def request(
        self, run_id: str, request_id: str, name: str, payload: Any
    ) -> h.HistoryEvent | None:
        """A transition request (``Engine.send``)."""
        return TransitionRequested(
            id=h.event_id(run_id, "tr", request_id, "requested"),
            run_id=run_id,
            request_id=request_id,
            transition=name,
            payload=payload,
        )

    def answered(self, state: RunState, request_id: str) -> bool:
        """Whether the instance resolved the request."""
        return _record(state, request_id) is not None

    def answer(self, state: RunState, request_id: str, name: str) -> None:
        """:class:`TransitionNotAllowed` when it was refused (or the instance ended first),
        :class:`TaskError` when its handler failed for good."""
        record = _record(state, request_id)
        if record is None or record["status"] == "rejected":
            reason = record["error"] if record else "the instance ended first"
            raise TransitionNotAllowed(f"{state.run_id}: {reason}")
        if record["status"] == "failed":
            task = state.tasks.get(f"{name}@{request_id}")
            if task is not None and task.error_type == "TransitionNotAllowed":
                raise TransitionNotAllowed(f"{state.run_id}: {record['error']}")
            raise TaskError(
                f"{state.run_id}: transition {name!r} failed: {record['error']}",
                task_id=f"{name}@{request_id}",
                retriable=False,
            )

    def result_fields(self, state: RunState) -> dict[str, Any]:
        """``RunResult.state`` and ``RunResult.transitions``."""
        part = state.extensions.get(KEY, {})
        return {"state": part.get("state"), "transitions": list(part.get("transitions", []))}

    def fold(self, state: RunState, event: h.HistoryEvent) -> bool:
        """Queue a request, or resolve the head one."""
        part = self.part(state)
        part.setdefault("state", None)
        requests: list[dict[str, Any]] = part.setdefault("requests", [])
        part.setdefault("transitions", [])
        if isinstance(event, TransitionRequested):
            requests.append(
                {
                    "request_id": event.request_id,
                    "transition": event.transition,
                    "payload": event.payload,
                }
            )
            return True
        if isinstance(event, TransitionApplied):
            return _applied(part, event)
        if isinstance(event, TransitionRejected):
            error: str = event.reason
            status = "rejected"
        elif isinstance(event, TransitionFailed):
            error, status = event.error, "failed"
        else:
            return False
        record = {
            "transition": event.transition,
            "source": part["state"],
            "target": None,
            "status": status,
            "error": error,
            "ts": event.ts,
        }
        return _resolve(part, event.request_id, record)


def _applied(part: dict[str, Any], e: TransitionApplied) -> bool:
    if e.request_id == "start" and part["state"] is not None:
        return False
    record = {
        "transition": e.transition,
        "source": e.source,
        "target": e.target,
        "status": "applied",
        "ts": e.ts,
    }
    if not _resolve(part, e.request_id, record):
        return False
    part["state"] = e.target
    return True


def _resolve(part: dict[str, Any], request_id: str, record: dict[str, Any]) -> bool:
    """Drop the head request if it is ``request_id``; ``start`` resolves no request."""
    requests: list[dict[str, Any]] = part["requests"]
    if request_id != "start":
        if not requests or requests[0]["request_id"] != request_id:
            return False
        del requests[0]  # a handful waiting at most: an instance applies them one at a time
    part["transitions"].append({"request_id": request_id, **record})
    return True


def _record(state: RunState, request_id: str) -> dict[str, Any] | None:
    """How the instance resolved request ``request_id``, or ``None`` (not yet)."""
    done: list[dict[str, Any]] = state.extensions.get(KEY, {}).get("transitions", [])
    return next((t for t in done if t["request_id"] == request_id), None)


def head_request(state: RunState) -> dict[str, Any] | None:
    """The request the instance resolves next, or ``None``."""
    requests: list[dict[str, Any]] = state.extensions.get(KEY, {}).get("requests", [])
    return requests[0] if requests else None


MACHINE_FOLD = MachineFold()
#: Histories are read without their definitions (a CLI, the run index): every engine adopts
#: this plugin (``deerflow.workflow.DEFAULT_PLUGINS``), whatever workflows it serves.
MACHINE_PLUGIN = FoldsPlugin(MACHINE_FOLD)
