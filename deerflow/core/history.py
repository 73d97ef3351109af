"""Run-history events: everything that changes a run is one of these, appended to its history.

Every event id is deterministic (``run_id:task:attempt:kind``), so a redelivered or re-emitted
event is recognised by the fold and ignored. Events are frozen pydantic models, a discriminated
union on ``type``, encoded with orjson through :mod:`deerflow._codec`.

The events here are the core's: runs, tasks and timers. A feature or a node kind adds its
own event classes (subclasses of :class:`HistoryEvent`) through a ``FoldExtension``
(:mod:`deerflow.core.fold_extension`), whose registration
(:mod:`deerflow.core.fold_registry`) adds them here so that :func:`decode` reads them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

import deerflow._codec as _codec
from deerflow.log.base import Message

SCHEMA_VERSION = 1


def now() -> float:
    """Wall-clock seconds since the epoch, as events record it."""
    return time.time()


class HistoryEvent(BaseModel):
    """A record of a run's history: what every one carries; subclasses pin ``type`` as a
    ``Literal`` (the core's are a union discriminated on it, a feature's are looked up)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    run_id: str
    ts: float = Field(default_factory=now)
    causation_id: str | None = None
    v: int = SCHEMA_VERSION

    if TYPE_CHECKING:  # each event class pins its own as a Literal (the union's discriminator)
        type: str


class ParentRef(BaseModel):
    """The task attempt of a parent run that started this run as a sub-workflow."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    task_id: str
    attempt: int = 1


class RunRequested(HistoryEvent):
    """A run was asked for (by the API, a trigger or a parent run)."""

    type: Literal["RunRequested"] = "RunRequested"
    workflow: str
    version: str = "1"
    fingerprint: str = ""
    #: the definition's task ids and their dependencies, to name what changed if it does
    shape: dict[str, list[str]] | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    input: Any = None
    trigger: dict[str, Any] | None = None
    parent: ParentRef | None = None
    correlation_id: str | None = None
    #: W3C ``traceparent`` the run's trace continues (a child run: its parent run's span)
    traceparent: str | None = None
    #: higher is served first where runs wait to start (a flow-control gate's queue)
    priority: int = 0


class TaskScheduled(HistoryEvent):
    """An attempt of a task was dispatched to the task queue.

    ``eager``: handed straight to a worker in the deciding process instead (no queue message);
    an owner rebuilding the run puts such an attempt on the queue if it has no outcome yet.
    """

    type: Literal["TaskScheduled"] = "TaskScheduled"
    task_id: str
    attempt: int
    fallback: bool = False
    eager: bool = False


class TaskCompleted(HistoryEvent):
    """An attempt of a task returned; ``output`` is its JSON result."""

    type: Literal["TaskCompleted"] = "TaskCompleted"
    task_id: str
    attempt: int
    output: Any = None
    started_at: float | None = None
    worker: str | None = None
    fallback: bool = False
    expansion: list[dict[str, Any]] | None = None


class TaskRequeued(HistoryEvent):
    """An eager attempt was put on the task queue after all (its worker stopped first)."""

    type: Literal["TaskRequeued"] = "TaskRequeued"
    task_id: str
    attempt: int


class TaskCollected(HistoryEvent):
    """Every child of an expanded node completed; ``output`` is the node's collected output."""

    type: Literal["TaskCollected"] = "TaskCollected"
    task_id: str
    output: Any = None


class TaskFailed(HistoryEvent):
    """An attempt of a task raised or timed out."""

    type: Literal["TaskFailed"] = "TaskFailed"
    task_id: str
    attempt: int
    error: str
    error_type: str = "Exception"
    traceback: str | None = None
    retriable: bool = True
    next_retry_delay: float | None = None
    started_at: float | None = None
    worker: str | None = None
    fallback: bool = False


class TaskSkipped(HistoryEvent):
    """A task will not run (an upstream failed, or the run was cancelled)."""

    type: Literal["TaskSkipped"] = "TaskSkipped"
    task_id: str
    reason: str


class TaskAbandoned(HistoryEvent):
    """A task failed for good: retries exhausted, a non-retryable error, or its fallback failed."""

    type: Literal["TaskAbandoned"] = "TaskAbandoned"
    task_id: str
    error: str


class TimerStarted(HistoryEvent):
    """A durable timer: when ``fire_at`` passes, the owner appends :class:`TimerFired`."""

    type: Literal["TimerStarted"] = "TimerStarted"
    timer_id: str
    fire_at: float
    task_id: str | None = None
    attempt: int | None = None


class TimerFired(HistoryEvent):
    """A durable timer fired."""

    type: Literal["TimerFired"] = "TimerFired"
    timer_id: str


class RunCompleted(HistoryEvent):
    """The run finished; ``output`` is its sink task's output (or a dict of sinks)."""

    type: Literal["RunCompleted"] = "RunCompleted"
    output: Any = None


class RunFailed(HistoryEvent):
    """The run ended with a failure."""

    type: Literal["RunFailed"] = "RunFailed"
    error: str
    failed_task: str | None = None


class RunParked(HistoryEvent):
    """The run's owner has another definition under the run's name and version.

    Nothing is decided for the run until the definition it started on is loaded again;
    ``reason`` says what changed. Recorded so that every process reports the run as parked,
    whatever definition it has loaded itself.
    """

    type: Literal["RunParked"] = "RunParked"
    reason: str


class RunResumed(HistoryEvent):
    """The definition a parked run started on is loaded again: the run goes on."""

    type: Literal["RunResumed"] = "RunResumed"


class RunCancelRequested(HistoryEvent):
    """Someone asked to cancel the run."""

    type: Literal["RunCancelRequested"] = "RunCancelRequested"
    reason: str = "cancelled"


class RunCancelled(HistoryEvent):
    """The run was cancelled; pending tasks were skipped."""

    type: Literal["RunCancelled"] = "RunCancelled"
    reason: str = "cancelled"


class RunRetryRequested(HistoryEvent):
    """An operator asked a failed run to go on from its failed tasks.

    The fold resets failed and skipped tasks (and failed children of expanded nodes) to pending
    and the run to running; tasks that completed keep their outputs. ``retry`` numbers the
    requests of one run (id ``run_id:retry:N``), so a repeated click is one retry.
    """

    type: Literal["RunRetryRequested"] = "RunRetryRequested"
    retry: int = 1
    reason: str = "retry requested"


class SearchAttributesSet(HistoryEvent):
    """A task set search attributes of its run: typed values the run index can filter on.

    ``attributes`` maps each name to ``{"kind": ..., "value": ...}``: kind is str, int,
    float, bool or datetime (its value epoch seconds).
    """

    type: Literal["SearchAttributesSet"] = "SearchAttributesSet"
    task_id: str | None = None
    attributes: dict[str, dict[str, Any]]


_CoreEvent = Annotated[
    RunRequested
    | TaskScheduled
    | TaskCompleted
    | TaskCollected
    | TaskRequeued
    | TaskFailed
    | TaskSkipped
    | TaskAbandoned
    | TimerStarted
    | TimerFired
    | RunCompleted
    | RunFailed
    | RunCancelRequested
    | RunParked
    | RunResumed
    | RunCancelled
    | RunRetryRequested
    | SearchAttributesSet,
    Field(discriminator="type"),
]

#: the types of events that end a run: the core's, then those features register
TERMINAL_TYPES: set[str] = {"RunCompleted", "RunFailed", "RunCancelled"}

#: the core's event types (the union's members), which no feature may reuse
_CORE_TYPES = frozenset(
    str(cls.model_fields["type"].default) for cls in get_args(get_args(_CoreEvent)[0])
)
#: event classes features added, by type (one per fold extension's event: a few dozen at most)
_ADDED: dict[str, type[HistoryEvent]] = {}


def type_name(cls: type[HistoryEvent]) -> str:
    """The ``type`` an event class records (its ``Literal`` default)."""
    field = cls.model_fields.get("type")
    name = None if field is None else field.default
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__name__} has no default ``type`` name")
    return name


def event_class(name: str) -> type[HistoryEvent] | None:
    """The class of history events of type ``name`` a feature added, or ``None``."""
    return _ADDED.get(name)


def is_core_type(name: str) -> bool:
    """Whether ``name`` is the type of one of the core's events."""
    return name in _CORE_TYPES


def add_event_types(classes: Iterable[type[HistoryEvent]], *, terminal: Iterable[str] = ()) -> None:
    """Make :func:`decode` read events of ``classes``; ``terminal``: those of them ending a run.

    Adding a class again is a no-op; a type name the core or another class already has is a
    :class:`ValueError` (two features would read each other's events).
    """
    for cls in classes:
        name = type_name(cls)
        known = _ADDED.get(name)
        if name in _CORE_TYPES or (known is not None and known is not cls):
            raise ValueError(f"history event type {name!r} is already defined")
        _ADDED[name] = cls
    TERMINAL_TYPES.update(terminal)


_adapter: TypeAdapter[HistoryEvent] = TypeAdapter(_CoreEvent)


def encode(event: HistoryEvent) -> bytes:
    """The event as JSON bytes."""
    return _codec.dumps(event.model_dump(mode="json"))


def message(topic: str, event: HistoryEvent) -> Message:
    """``event`` as a record of the history topic, keyed by its run (one partition, in order)."""
    return Message(topic=topic, key=event.run_id, value=encode(event))


def decode(data: bytes) -> HistoryEvent:
    """Parse JSON bytes into the right event class; ``ValueError`` when they are not one.

    Parsed by orjson, then validated: pydantic's own JSON parser stops at about 200 levels of
    nesting, below what the encoder writes (254), so a deeply nested output or trigger event
    would be written but never read back. (Same speed, measured.)
    """
    raw = _codec.loads(data)
    added = _ADDED.get(str(raw.get("type"))) if _ADDED and isinstance(raw, dict) else None
    if added is not None:
        return added.model_validate(raw)
    return _adapter.validate_python(raw)


def event_id(run_id: str, *parts: object) -> str:
    """A deterministic event id: the run id and the parts joined by ``:``."""
    return ":".join([run_id, *map(str, parts)])


def timer_started(
    run_id: str,
    timer_id: str,
    fire_at: float,
    now: float,
    *,
    task_id: str | None = None,
    attempt: int | None = None,
) -> TimerStarted:
    """The :class:`TimerStarted` of ``timer_id`` in ``run_id``, with the id every decider gives
    it (a decision taken again starts the same timer, which the fold then ignores).

    Args:
        run_id: the run the timer belongs to.
        timer_id: the timer's name within the run (``retry:<task>:<attempt>``, ...).
        fire_at: when it fires (epoch seconds).
        now: the decision's time (the event's ``ts``).
        task_id: the node the timer retries, for a retry's backoff.
        attempt: the attempt it starts, for a retry's backoff.
    """
    return TimerStarted(
        id=event_id(run_id, timer_id, "started"),
        run_id=run_id,
        ts=now,
        timer_id=timer_id,
        fire_at=fire_at,
        task_id=task_id,
        attempt=attempt,
    )
