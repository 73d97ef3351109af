"""The run state: what the history says about a run, its tasks and its expanded nodes.

:class:`RunState` is plain data (snapshotted as it is), built by the pure fold
(:func:`~deerflow.core.fold.fold`, state = fold(history)) from a run's history events. The
fold is split by purpose, and this module re-exports the names it always gave, which stay
the documented import path:

* :mod:`deerflow.core.fold`: the fold itself, deterministic and idempotent;
* :mod:`deerflow.core.repeats`: which events it recognises as repeats, in a bounded window;
* :mod:`deerflow.core.fold_runs` and :mod:`deerflow.core.fold_tasks`: how each of the core's
  events folds (runs; tasks, timers and the children of expanded nodes);
* :mod:`deerflow.core.fold_extension` and :mod:`deerflow.core.fold_registry`: how a feature or
  a node kind folds its own events (a :class:`FoldExtension`), and what the registered ones
  say about a run;
* :mod:`deerflow.core.sharing`: what the states of many runs hold once.
"""

from __future__ import annotations

import sys
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from deerflow.core import history as h
from deerflow.core.expand import child_task_id

PENDING = "pending"
SCHEDULED = "scheduled"
RETRY_WAIT = "retry_wait"
COMPLETED = "completed"
FAILED = "failed"
SKIPPED = "skipped"
EXPANDED = "expanded"

TASK_DONE = frozenset({COMPLETED, FAILED, SKIPPED})

RUN_RUNNING = "running"
RUN_COMPLETED = "completed"
RUN_FAILED = "failed"
RUN_CANCELLED = "cancelled"

#: statuses a run that has not ended shows: running, and those extensions show a running run
#: under while it waits to start (:attr:`FoldExtension.live_statuses`: flow control's queued)
LIVE_STATUSES: set[str] = {RUN_RUNNING}


@dataclass(slots=True)
class TaskState:
    """What the history says about one task of a run."""

    status: str = PENDING
    attempts: int = 0
    fallback: bool = False
    output: Any = None
    error: str | None = None
    error_type: str | None = None
    traceback: str | None = None
    retriable: bool = True
    next_retry_delay: float | None = None
    failed_at: float | None = None
    scheduled_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    timer_id: str | None = None
    fire_at: float | None = None
    node: str | None = None
    expansion: Expansion | None = None
    attempt_base: int = 0  # attempts made before the last operator retry (fresh retry budget)
    eager: bool = False  # the current attempt went straight to the scheduling process's worker


@dataclass(slots=True)
class Expansion:
    """The children of an expanded node, with counters kept by the fold.

    Counters make deciding O(ready children), not O(all children), so a node with 10,000
    children does not cost 10,000 steps per event.
    """

    children: list[str]
    specs: dict[str, dict[str, Any]]
    waiting_on: dict[str, int]
    dependents: dict[str, list[str]]
    ready: deque[str]
    retrying: set[str] = field(default_factory=set)
    running: int = 0
    completed: int = 0
    failed: str | None = None

    @classmethod
    def plan(cls, node_id: str, specs: list[dict[str, Any]]) -> Expansion:
        """The expansion of ``node_id`` into ``specs`` (already validated)."""
        children = [child_task_id(node_id, s["id"]) for s in specs]
        by_id = dict(zip(children, specs, strict=True))
        waiting: dict[str, int] = {}
        dependents: dict[str, list[str]] = {}
        ready: deque[str] = deque()
        for child, spec in by_id.items():
            deps = [child_task_id(node_id, d) for d in spec.get("depends_on", [])]
            waiting[child] = len(deps)
            for dep in deps:
                dependents.setdefault(dep, []).append(child)
            if not deps:
                ready.append(child)
        return cls(children, by_id, waiting, dependents, ready)

    @property
    def done(self) -> bool:
        """Whether every child completed."""
        return self.completed == len(self.children)


@dataclass(slots=True)
class RunState:
    """A run as folded from its history."""

    run_id: str
    workflow: str = ""
    version: str = "1"
    fingerprint: str = ""
    shape: dict[str, list[str]] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    input: Any = None
    trigger: dict[str, Any] | None = None
    parent: h.ParentRef | None = None
    correlation_id: str | None = None
    traceparent: str | None = None
    requested: bool = False
    #: higher is served first where runs wait to start (``engine.start(priority=...)``)
    priority: int = 0
    status: str = RUN_RUNNING
    output: Any = None
    error: str | None = None
    failed_task: str | None = None
    cancel_requested: bool = False
    started_at: float | None = None
    finished_at: float | None = None
    tasks: dict[str, TaskState] = field(default_factory=dict)
    timers: dict[str, float] = field(default_factory=dict)
    #: what fold extensions keep, by their key: dicts, lists and scalars only
    extensions: dict[str, Any] = field(default_factory=dict)
    #: the ids of the last ``SEEN_LIMIT`` events read whose repeats are known by id, oldest
    #: first, each with the run's count of folded events when it was read (a dict: O(1) lookup)
    seen: dict[str, int] = field(default_factory=dict)
    events: int = 0
    retries: int = 0
    #: attempts dispatched and not finished (``Workflow(max_parallel=...)`` bounds it)
    running: int = 0
    #: why the run's owner parked it (its definition changed), or None
    parked: str | None = None
    parks: int = 0  # times it was parked, for the ids of the parking events
    #: what tasks set with ``context.set_search_attributes``: name -> value (typed)
    search_attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        """Whether the run has ended."""
        return self.status != RUN_RUNNING

    if TYPE_CHECKING:
        # What a fold extension reads of its part under a name of its own
        # (FoldExtension.attributes: a feature's ``state.<name>``) is a property that
        # register_fold adds to the class. Not a __getattr__ at run time: CPython specialises
        # attribute reads only on classes without one, and the fold reads states all the time.
        def __getattr__(self, name: str) -> Any: ...

    def task(self, task_id: str) -> TaskState:
        """The state of ``task_id`` (created pending on first use)."""
        state = self.tasks.get(task_id)
        if state is None:
            # interned: every run of a workflow names the same tasks
            state = self.tasks[sys.intern(task_id)] = TaskState()
        return state


# The fold's modules build on the classes above, so they are imported once those exist. The
# package imports this module first (``deerflow.core`` -> ``definition`` -> here), so whichever
# of them a user imports, it finds the classes defined.
from deerflow.core.fold import fold, fold_all  # noqa: E402
from deerflow.core.fold_extension import FoldExtension, Wait  # noqa: E402
from deerflow.core.fold_registry import (  # noqa: E402
    SHOWN,
    indexed_filters,
    indexed_values,
    register_fold,
    request_takers,
    result_fields,
    status_of,
    waits_of,
)
from deerflow.core.fold_runs import end_run, next_retry  # noqa: E402
from deerflow.core.repeats import BY_CONTENT, SEEN_LIMIT  # noqa: E402
from deerflow.core.sharing import shared  # noqa: E402

__all__ = [
    "BY_CONTENT",
    "COMPLETED",
    "EXPANDED",
    "FAILED",
    "LIVE_STATUSES",
    "PENDING",
    "RETRY_WAIT",
    "RUN_CANCELLED",
    "RUN_COMPLETED",
    "RUN_FAILED",
    "RUN_RUNNING",
    "SCHEDULED",
    "SEEN_LIMIT",
    "SHOWN",
    "SKIPPED",
    "TASK_DONE",
    "Expansion",
    "FoldExtension",
    "RunState",
    "TaskState",
    "Wait",
    "end_run",
    "fold",
    "fold_all",
    "indexed_filters",
    "indexed_values",
    "next_retry",
    "register_fold",
    "request_takers",
    "result_fields",
    "shared",
    "status_of",
    "waits_of",
]
