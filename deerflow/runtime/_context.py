"""What a task body sees: ``TaskContext``, built by the worker from the dispatched task."""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pydantic_core
from pydantic import BaseModel, ConfigDict, Field

from deerflow import _codec
from deerflow.core import history as h
from deerflow.events import parse_trigger_event
from deerflow.log.base import Headers, Message
from deerflow.runtime._runrows import attribute_value

_TASK_LOGGER = logging.getLogger("deerflow.task")
#: Attempts whose recorded events are not appended yet, at most (the oldest are dropped:
#: an attempt that never reports its outcome leaves nothing to append).
_RECORDED_LIMIT = 10_000
_recorded: dict[tuple[str, str, int], list[h.HistoryEvent]] = {}


def take_recorded(run_id: str, task_id: str, attempt: int) -> list[h.HistoryEvent]:
    """The history events an attempt's body recorded (search attributes), once."""
    return _recorded.pop((run_id, task_id, attempt), [])


class TaskDispatch(BaseModel):
    """The message on the task queue: everything a worker needs to run one attempt."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    run_id: str
    workflow: str
    version: str = "1"
    task_id: str
    attempt: int
    fallback: bool = False
    params: dict[str, Any] = Field(default_factory=dict)
    input: Any = None
    trigger: dict[str, Any] | None = None
    upstream: dict[str, dict[str, Any]] = Field(default_factory=dict)
    correlation_id: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict)
    traceparent: str | None = None  # the run's, when it continues another run's trace
    #: where the attempt queues for a worker slot, higher first: the task's, else the run's
    priority: int = 0

    def message(self, topic: str, partition: int | None = None) -> Message:
        """This attempt as a task-queue record (placed by run and task unless ``partition``).

        A priority other than 0 is also a header, so a worker orders the records it holds
        without decoding them.
        """
        return Message(
            topic=topic,
            key=f"{self.run_id}/{self.task_id}",
            value=self.model_dump_json().encode(),
            headers=priority_header(self.priority),
            partition=partition,
        )


#: the task-queue record header that carries an attempt's priority (absent: 0)
PRIORITY_HEADER = "deerflow-priority"


def priority_header(priority: int) -> Headers:
    """The headers of a task-queue record of ``priority`` (none for the default, 0)."""
    return ((PRIORITY_HEADER, str(priority).encode()),) if priority else ()


@dataclass(frozen=True, slots=True)
class TaskView:
    """An upstream task as a task body sees it."""

    status: str
    output: Any = None
    error: str | None = None
    attempts: int = 0


class _UpstreamTasks(Mapping[str, TaskView]):
    """``context.tasks``: upstream tasks by id, with an error that says what is available."""

    def __init__(self, task_id: str, views: dict[str, TaskView]) -> None:
        self._task_id = task_id
        self._views = views

    def __getitem__(self, key: str) -> TaskView:
        try:
            return self._views[key]
        except KeyError:
            raise KeyError(
                f"task {self._task_id!r} cannot see task {key!r}: only upstream tasks "
                f"({', '.join(sorted(self._views)) or 'none'}) are visible; add it to depends_on"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._views)

    def __len__(self) -> int:
        return len(self._views)


class _Outputs(Mapping[str, Any]):
    """Upstream outputs by task id (the fan-in views of the context)."""

    def __init__(self, tasks: Mapping[str, TaskView]) -> None:
        self._tasks = tasks

    def __getitem__(self, key: str) -> Any:
        return self._tasks[key].output

    def __iter__(self) -> Iterator[str]:
        return iter(self._tasks)

    def __len__(self) -> int:
        return len(self._tasks)


def trigger_event_view(data: Mapping[str, Any] | None) -> Any:
    """The trigger event as a typed model (``deerflow.events``), or attribute-access fallback."""
    if data is None:
        return None
    return parse_trigger_event(data)


_IMMUTABLE = (str, int, float, bool)


def _private_copy(value: Any) -> Any:
    """``value`` as a reader of the task queue gets it: plain JSON data, a copy of its own."""
    try:
        return _codec.to_json_value(value)
    except TypeError:  # what the queue's pydantic encoding takes and orjson does not
        return _codec.loads(pydantic_core.to_json(value))


class TaskContext:
    """Passed to every task body.

    Attributes:
        run_id: the run this attempt belongs to.
        task_id: the task being run.
        attempt: 1 for the first attempt, 2 for the first retry, ...
        params: the run's parameters.
        input: the run's input (for a sub-workflow: the upstream output).
        tasks: upstream tasks by id (``context.tasks["extract"].output``).
        trigger_event: the event that started the run (S3, Kafka, webhook), or ``None``.
        trigger_events: a batch's run: the trigger events of its batch's runs.
        idempotency_key: ``run_id/task_id``, stable across retries and redeliveries: key
            side effects on it to make them exactly-once.
        attempt_key: ``run_id/task_id/attempt``, stable across redeliveries of one attempt.
        logger: a logger whose records carry the run and task ids.
    """

    def __init__(
        self,
        dispatch: TaskDispatch,
        *,
        logger: logging.Logger | None = None,
        shared: bool = False,
    ) -> None:
        self._dispatch = dispatch
        # ``shared``: the dispatch is the orchestrator's own (an eager attempt), whose values
        # are its run state's. What the body reads of them is copied on first read, as if it
        # came through the task queue, so a body mutating its inputs cannot change the run;
        # a body that reads nothing copies nothing.
        self._shared = shared
        self._copies: dict[str, Any] = {}
        self.run_id = dispatch.run_id
        self.task_id = dispatch.task_id
        self.attempt = dispatch.attempt
        self.workflow = dispatch.workflow
        self.correlation_id = dispatch.correlation_id or dispatch.run_id
        self.idempotency_key = f"{dispatch.run_id}/{dispatch.task_id}"
        self.attempt_key = f"{dispatch.run_id}/{dispatch.task_id}/{dispatch.attempt}"
        # The views and the logger are built on first use: most bodies read neither, and
        # building them was a tenth of a chain step's CPU.
        self._tasks: Mapping[str, TaskView] | None = None
        self._base_logger = logger
        self._logger: logging.LoggerAdapter[logging.Logger] | None = None
        self._trigger_event: Any = None

    def _read(self, name: str) -> Any:
        """The dispatch's field ``name``, the body's own copy of it when ``shared``."""
        value = getattr(self._dispatch, name)
        if not self._shared or value is None or type(value) in _IMMUTABLE:
            return value
        copies = self._copies
        if name not in copies:
            copies[name] = _private_copy(value)
        return copies[name]

    @property
    def params(self) -> dict[str, Any]:
        """The run's parameters."""
        params: dict[str, Any] = self._read("params")
        return params

    @property
    def input(self) -> Any:
        """The run's input (for a sub-workflow: the upstream output)."""
        return self._read("input")

    @property
    def tasks(self) -> Mapping[str, TaskView]:
        """Upstream tasks by id (``context.tasks["extract"].output``)."""
        if self._tasks is None:
            upstream: dict[str, dict[str, Any]] = self._read("upstream")
            self._tasks = _UpstreamTasks(
                self.task_id, {tid: TaskView(**view) for tid, view in upstream.items()}
            )
        return self._tasks

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger whose records carry the run and task ids."""
        if self._logger is None:
            self._logger = logging.LoggerAdapter(
                self._base_logger or _TASK_LOGGER,
                {"run_id": self.run_id, "task_id": self.task_id},
            )
        return self._logger

    @property
    def trigger_event(self) -> Any:
        """The event that started the run, typed by source (``event.type``)."""
        if self._trigger_event is None and self._dispatch.trigger is not None:
            self._trigger_event = trigger_event_view(self._read("trigger"))
        return self._trigger_event

    @property
    def trigger_events(self) -> list[Any]:
        """A batch's run (``Workflow(batch=...)``): the trigger event of every run of its batch,
        oldest first, typed as :attr:`trigger_event` is (a run started by hand brings
        ``{"params": ..., "input": ...}``); any other run: its own trigger event, if any."""
        members = self.extra.get("trigger_events")
        if members is None:
            return [] if self.trigger_event is None else [self.trigger_event]
        return [
            trigger_event_view(m["trigger"])
            if m.get("trigger") is not None
            else {"params": m.get("params"), "input": m.get("input")}
            for m in members
        ]

    @property
    def payload(self) -> Any:
        """The payload sent with a state-machine transition request (``engine.send``)."""
        return self.extra.get("payload")

    def __getattr__(self, name: str) -> Any:
        # Keys of a dict input read as attributes: the spec's ``context.order``.
        if name.startswith("_"):  # not yet set (a copy being made): no input to look in
            raise AttributeError(name)
        data = self.input
        if isinstance(data, dict) and name in data:
            return data[name]
        raise AttributeError(
            f"TaskContext has no attribute {name!r} (and the run's input has no key {name!r})"
        )

    def set_search_attributes(self, attributes: Mapping[str, Any]) -> None:
        """Set search attributes of this run: ``engine.list_runs(attributes={...})`` finds it.

        Values are str, int, float, bool or datetime; a name set again takes the new value.
        They are recorded in the run's history with the attempt's outcome.

        Raises:
            TypeError: a name that is not a string or a value of another type.
        """
        typed = {}
        for name, value in attributes.items():
            kind, stored = attribute_value(name, value)
            typed[name] = {"kind": kind, "value": stored}
        ident = (self.run_id, self.task_id, self.attempt)
        recorded = _recorded.setdefault(ident, [])
        recorded.append(
            h.SearchAttributesSet(
                id=h.event_id(*ident, "attributes", len(recorded) + 1),
                run_id=self.run_id,
                task_id=self.task_id,
                attributes=typed,
            )
        )
        while len(_recorded) > _RECORDED_LIMIT:
            del _recorded[next(iter(_recorded))]

    @property
    def parallel_results(self) -> Mapping[str, Any]:
        """Fan-in: ``parallel_results[id]`` is the list of results of an upstream fan-out."""
        return _Outputs(self.tasks)

    @property
    def dynamic_outputs(self) -> Mapping[str, Any]:
        """``dynamic_outputs[id]`` maps each generated task id of an upstream node to its output."""
        return _Outputs(self.tasks)

    @property
    def extra(self) -> dict[str, Any]:
        """Pattern-specific data carried by the dispatch (fan-out item, child outputs, ...)."""
        extra: dict[str, Any] = self._read("extra")
        return extra

    def __repr__(self) -> str:
        return (
            f"TaskContext(run_id={self.run_id!r}, task_id={self.task_id!r}, attempt={self.attempt})"
        )


current_task: contextvars.ContextVar[TaskContext | None] = contextvars.ContextVar(
    "deerflow_current_task", default=None
)
"""The context of the task attempt running in this (async or thread) context, if any."""
