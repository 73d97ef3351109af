"""The ``wait_for_event`` node kind, its history events and their fold.

An attempt of the node is decided, never run: as it is scheduled, its owner records
:class:`EventWaitStarted` (what it waits for, under which key, until when) and, with a
timeout, a durable timer. The node is then ``waiting`` (it takes no slot of
``max_parallel``). It ends by one of two history events:

* :class:`EventMatched`, appended by the matching index when an event meets the wait (its id
  is the wait's and the event's: a redelivered event resumes the node once, and a second event
  finds it done);
* :class:`EventWaitTimedOut`, decided by the owner when the timer fired: the node completes
  with ``None`` (``on_timeout="none"``) or fails for good (``"fail"``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import deerflow._codec as _codec
from deerflow.core import KindOptions, NodeKind, RunState, TaskDef
from deerflow.core import history as h
from deerflow.core.state import (
    COMPLETED,
    RETRY_WAIT,
    SCHEDULED,
    FoldExtension,
    TaskState,
    Wait,
)
from deerflow.events import EventTrigger
from deerflow.matching._spec import MISSING, event_key, resolve

#: the status of a node waiting for its event (its kind's own status)
WAITING = "waiting"


class WaitOptions(KindOptions):
    """A ``wait_for_event`` node's options (see :meth:`MatchingMixin.wait_for_event`)."""

    event: str
    match: tuple[tuple[str, str], ...] = ()
    where: Callable[[dict[str, Any]], bool] | None = None
    timeout: float | None = None
    on_timeout: Literal["none", "fail"] = "none"
    lookback: float | None = None
    #: a topic of the deployment's log whose every message is an ``event`` (``source=``)
    topic: str | None = None
    #: a webhook or S3 trigger spec whose every input is an ``event`` (``deerflow serve``
    #: serves it: :func:`deerflow.connectors.sources_for`)
    via: EventTrigger | None = None


class EventWaitStarted(h.HistoryEvent):
    """An attempt of a ``wait_for_event`` node began to wait (the index registers it).

    ``key`` is what the index files it under; ``since`` minus ``lookback`` is the oldest event
    time that matches; ``deadline`` is when it times out (``None``: never). ``error``: the run
    has no value for the match (the node fails instead of waiting).
    """

    type: Literal["EventWaitStarted"] = "EventWaitStarted"
    task_id: str
    attempt: int
    workflow: str = ""
    version: str = "1"
    event: str
    key: str = ""
    since: float = 0.0
    deadline: float | None = None
    lookback: float | None = None
    filtered: bool = False
    error: str | None = None

    @property
    def wait_id(self) -> str:
        """The wait's id: its run, node and attempt."""
        return wait_id(self.run_id, self.task_id, self.attempt)


class EventMatched(h.HistoryEvent):
    """An event met a waiting node: ``event`` (id, type, data, time, source) is its output."""

    type: Literal["EventMatched"] = "EventMatched"
    task_id: str
    attempt: int
    event: dict[str, Any]


class EventWaitTimedOut(h.HistoryEvent):
    """A waiting node's timeout passed with no match: it completes with ``None`` or fails."""

    type: Literal["EventWaitTimedOut"] = "EventWaitTimedOut"
    task_id: str
    attempt: int
    fail: bool = False
    error: str = ""


def wait_id(run_id: str, task_id: str, attempt: int) -> str:
    """The id of one attempt's wait (also the prefix of its :class:`EventMatched` ids)."""
    return h.event_id(run_id, task_id, attempt, "wait")


def timer_of(task_id: str, attempt: int) -> str:
    """The id of the durable timer of one attempt's timeout."""
    return f"wait:{task_id}:{attempt}"


class WaitFold(FoldExtension):
    """Folds the wait events; keeps each waiting node's wait under ``waits`` (the dashboard's)."""

    key = "waits"
    event_classes = (EventWaitStarted, EventMatched, EventWaitTimedOut)

    def fold(self, state: RunState, event: h.HistoryEvent) -> bool:
        """Apply a wait event to the node it names; one for another attempt changes nothing."""
        assert isinstance(event, EventWaitStarted | EventMatched | EventWaitTimedOut)
        task = state.tasks.get(event.task_id)
        if task is None or task.attempts != event.attempt:
            return False
        part = self.part(state)
        if isinstance(event, EventWaitStarted):
            if task.status != SCHEDULED:
                return False
            state.running -= 1  # a wait holds no slot of max_parallel
            if event.error is not None:
                _fail(task, event.error, event.ts)
                return True
            task.status = WAITING
            part[event.task_id] = {
                "event": event.event,
                "key": event.key,
                "since": event.since,
                "deadline": event.deadline,
            }
            if event.filtered:
                part[event.task_id]["filtered"] = True
            return True
        if task.status != WAITING:
            return False  # matched, timed out, or the run moved on: a repeat changes nothing
        part.pop(event.task_id, None)
        if isinstance(event, EventWaitTimedOut) and event.fail:
            _fail(task, event.error, event.ts)
            return True
        task.status = COMPLETED
        task.output = event.event if isinstance(event, EventMatched) else None
        task.error = None
        task.finished_at = event.ts
        return True

    def waits(self, state: RunState) -> dict[str, Wait]:
        """Each waiting node's event, the values it must match, and its deadline."""
        return {
            tid: {"for": describe(w), "deadline": w["deadline"]}
            for tid, w in state.extensions.get(self.key, {}).items()
        }


def describe(wait: dict[str, Any]) -> str:
    """``event InvoiceApproved where data.invoice_id = inv-7``: a wait as people read it."""
    text = f"event {wait['event']}"
    try:
        _, paths, values = _codec.loads(wait["key"]) if wait["key"] else ("", [], [])
    except (ValueError, TypeError):
        paths, values = [], []  # a key this version cannot read: the event type still says much
    conditions = [
        f"{path} = {value if isinstance(value, str) else _codec.dumps(value).decode()}"
        for path, value in zip(paths, values, strict=False)
    ]
    text += " where " + " and ".join(conditions) if conditions else ""
    return text + (" (and its where= filter)" if wait.get("filtered") else "")


def _fail(task: TaskState, error: str, ts: float) -> None:
    """Fail the attempt for good (no retry): the decider abandons the node or falls back."""
    task.status = RETRY_WAIT
    task.error = error
    task.error_type = "EventWaitFailed"
    task.retriable = False
    task.failed_at = task.finished_at = ts


WAIT_FOLD = WaitFold()


def run_view(state: RunState) -> dict[str, Any]:
    """What a match's run paths read: params, input, trigger, and tasks' outputs."""
    return {
        "params": state.params,
        "input": state.input,
        "trigger": state.trigger or {},
        "tasks": {
            tid: {"output": t.output, "status": t.status}
            for tid, t in state.tasks.items()
            if t.status == COMPLETED
        },
    }


def run_key(
    event: str, pairs: tuple[tuple[str, str], ...], view: dict[str, Any]
) -> tuple[str, str | None]:
    """The key of a wait for ``event`` matching ``pairs`` in the run ``view``, or an error."""
    values = []
    for event_path, run_path in pairs:
        value = resolve(run_path, view)
        if value is MISSING:
            return "", f"match {event_path!r}: the run has no {run_path!r}"
        values.append(value)
    return event_key(event, tuple(p for p, _ in pairs), tuple(values)), None


class WaitForEventKind(NodeKind):
    """A node that waits for a matching event (see the module docstring)."""

    name = "wait_for_event"
    label = "wait for event"
    css_class = "wait"
    options_model = WaitOptions
    folds = (WAIT_FOLD,)

    def runs_on_worker(self, task: TaskDef) -> bool:
        """The index or the timer ends a wait: no task message."""
        return False

    def on_scheduled(
        self, task: TaskDef, state: RunState, attempt: int, now: float
    ) -> list[h.HistoryEvent]:
        """Start the timeout's timer, then the wait the index registers."""
        opts = self.options(task, WaitOptions)
        run_id = state.run_id
        key, error = run_key(opts.event, opts.match, run_view(state))
        deadline = None if opts.timeout is None else now + opts.timeout
        events: list[h.HistoryEvent] = []
        if deadline is not None and error is None:
            events.append(h.timer_started(run_id, timer_of(task.id, attempt), deadline, now))
        events.append(
            EventWaitStarted(
                id=h.event_id(run_id, task.id, attempt, "waiting"),
                run_id=run_id,
                ts=now,
                task_id=task.id,
                attempt=attempt,
                workflow=state.workflow,
                version=state.version,
                event=opts.event,
                key=key,
                since=now,
                deadline=deadline,
                lookback=opts.lookback,
                filtered=opts.where is not None,
                error=error,
            )
        )
        return events

    def decide(
        self, task: TaskDef, ts: TaskState, state: RunState, now: float, budget: int | None
    ) -> list[h.HistoryEvent]:
        """A waiting node whose timer fired times out."""
        if ts.status != WAITING:
            return []
        opts = self.options(task, WaitOptions)
        if opts.timeout is None or timer_of(task.id, ts.attempts) in state.timers:
            return []
        fail = opts.on_timeout == "fail"
        return [
            EventWaitTimedOut(
                id=h.event_id(state.run_id, task.id, ts.attempts, "timedout"),
                run_id=state.run_id,
                ts=now,
                task_id=task.id,
                attempt=ts.attempts,
                fail=fail,
                error=f"no {opts.event} event within {opts.timeout:g}s" if fail else "",
            )
        ]


WAIT_FOR_EVENT = WaitForEventKind()
