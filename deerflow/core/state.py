"""Run state and the pure ``fold``: state = fold(history).

The fold is deterministic and idempotent: events that make no sense in the current state (a
completion for an attempt that is not the current one, anything after the run ended) are
ignored, and so is a repeat of an event already folded. So duplicated, re-emitted or late
events cannot change a run's outcome.

Repeats are recognised in two ways, and neither grows with the run's history:

* **by content**, whatever the distance: the types in :data:`BY_CONTENT` only ever move their
  part of the state forward (an attempt's number, a timer that fired, the run's request, its
  retry number, its end), so a repeat finds that part already past it and changes nothing;
* **by id**, for every other type (skips and abandons, which an operator retry undoes, a failed
  run's end, parking, search attributes, timers of no task and every fold extension's events):
  a run keeps the ids of the last :data:`SEEN_LIMIT` such events it read, in
  ``RunState.seen``. A repeat of one of them is recognised while fewer than that many others
  were read since; a redelivery or an append retried after an ambiguous failure comes back
  that soon. One arriving later is folded again, as a new event would be.

The fold here knows the core's events: runs, tasks, timers, and the children of expanded
nodes (the generic mechanism dynamic tasks, parallel tasks and map-reduce share, and any kind
built on it). A feature or a node kind folds its own events through a :class:`FoldExtension`:
it declares the event types it adds (or folds) and keeps what it needs in its part of
``RunState.extensions`` (JSON-like data only: a run state is data, snapshotted as it is).
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypedDict

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


#: how many ids of events whose repeats are known by id (not :data:`BY_CONTENT`) a run keeps
SEEN_LIMIT = 256

#: the event types whose repeats the fold ignores by their content, however late they come
#: (a timer's start only when it names its task and attempt: a retry timer)
BY_CONTENT = frozenset(
    {
        "RunRequested",  # a run is requested once
        "TaskScheduled",  # an attempt number not above the task's latest
        "TaskRequeued",  # the attempt is no longer eager
        "TaskCompleted",  # the attempt is no longer the scheduled one
        "TaskFailed",
        "TaskCollected",  # the node is no longer expanded (completed stays completed)
        "TimerStarted",
        "TimerFired",  # the timer is gone, and a repeat of its start is known (a retry timer's
        # by content, another's by id within the window)
        "RunCompleted",  # ends the run for good: only a failed run is retried
        "RunCancelled",
        "RunCancelRequested",
        "RunRetryRequested",  # its number is not the next retry
    }
)


def fold(state: RunState, event: h.HistoryEvent) -> bool:
    """Apply ``event`` to ``state`` in place; return whether it changed anything."""
    # Whether a repeat of the event is known by its id (else by its content); a timer of no
    # task's attempt could start again once fired: only its id tells.
    by_id = event.type not in BY_CONTENT or (
        isinstance(event, h.TimerStarted) and (event.task_id is None or event.attempt is None)
    )
    if by_id and event.id in state.seen:
        return False
    if state.terminal and not isinstance(event, (h.RunRequested, h.RunRetryRequested)):
        return False
    if not state.requested and not isinstance(event, h.RunRequested):
        # Events that overtake their RunRequested (other partitions, a lagging trigger) wait
        # for nothing: they are kept out of the state until the request arrives. A history
        # partition keeps per-run order, so this only happens for corrupted logs.
        return False
    apply = _APPLY.get(event.type)
    if apply is not None:
        changed = bool(apply(state, event))
    else:
        extension = _EXTENDED.get(event.type)
        changed = extension is not None and extension.fold(state, event)
    if by_id:
        # Kept even when it changed nothing: its repeat may come when it would (search
        # attributes set back to a value another event changed in between).
        _remember(state, event.id)
    if changed:
        state.events += 1
    return changed


def _remember(state: RunState, event_id: str) -> None:
    """Keep ``event_id`` among the run's last :data:`SEEN_LIMIT` ids, dropping the oldest."""
    seen = state.seen
    seen[event_id] = state.events
    while len(seen) > SEEN_LIMIT:
        del seen[next(iter(seen))]  # dicts keep insertion order: the oldest comes first


#: the DAG shape of each definition recent runs were requested with, by fingerprint: the runs
#: of one definition share one (read-only) shape rather than each keeping its decoded copy
_SHAPES: dict[str, dict[str, list[str]]] = {}
_SHAPES_LIMIT = 256


def _shared_shape(
    fingerprint: str, shape: dict[str, list[str]] | None
) -> dict[str, list[str]] | None:
    if shape is None or not fingerprint:
        return shape
    known = _SHAPES.get(fingerprint)
    if known == shape:
        return known
    _SHAPES[fingerprint] = shape
    while len(_SHAPES) > _SHAPES_LIMIT:
        del _SHAPES[next(iter(_SHAPES))]
    return shape


def shared(state: RunState) -> RunState:
    """``state`` holding what it has in common with other runs once (a run restored from a
    snapshot decodes its own copies): interned names and task ids, a shared shape."""
    state.workflow = sys.intern(state.workflow)
    state.version = sys.intern(state.version)
    state.fingerprint = sys.intern(state.fingerprint)
    state.shape = _shared_shape(state.fingerprint, state.shape)
    state.tasks = {sys.intern(task_id): task for task_id, task in state.tasks.items()}
    return state


def _run_requested(state: RunState, e: h.RunRequested) -> bool:
    if state.requested:
        return False
    state.requested = True
    # Interned: many runs of few workflows, each held for as long as it runs (or waits).
    state.workflow = sys.intern(e.workflow)
    state.version = sys.intern(e.version)
    state.fingerprint = sys.intern(e.fingerprint)
    state.shape = _shared_shape(state.fingerprint, e.shape)
    state.params = dict(e.params)
    state.input = e.input
    state.trigger = e.trigger
    state.parent = e.parent
    state.correlation_id = e.correlation_id
    state.traceparent = e.traceparent
    state.priority = e.priority
    state.started_at = e.ts
    return True


def _task_scheduled(state: RunState, e: h.TaskScheduled) -> bool:
    task = state.task(e.task_id)
    if task.status in TASK_DONE or task.status == EXPANDED or e.attempt <= task.attempts:
        return False
    exp = _expansion_of(state, task)
    if exp is not None:
        if task.status == PENDING:
            exp.running += 1
            if exp.ready and exp.ready[0] == e.task_id:
                exp.ready.popleft()
            elif e.task_id in exp.ready:
                exp.ready.remove(e.task_id)
        exp.retrying.discard(e.task_id)
    state.running += 1
    task.status = SCHEDULED
    task.attempts = e.attempt
    task.fallback = e.fallback
    task.eager = e.eager
    task.scheduled_at = e.ts
    task.timer_id = None
    task.fire_at = None
    return True


def _task_requeued(state: RunState, e: h.TaskRequeued) -> bool:
    task = state.tasks.get(e.task_id)
    if task is None or task.status != SCHEDULED or task.attempts != e.attempt or not task.eager:
        return False
    task.eager = False  # a queue message delivers it now: nobody needs to re-dispatch it
    return True


def _current_attempt(state: RunState, e: h.TaskCompleted | h.TaskFailed) -> TaskState | None:
    """The task if ``e`` reports its current attempt.

    An outcome may reach the history before the ``TaskScheduled`` that recorded its dispatch
    (the dispatch is appended first, and a fast worker can answer before the orchestrator's
    second append lands). The outcome of the next attempt then implies its scheduling, so the
    fold gives the same state in either order; the late ``TaskScheduled`` is ignored.
    """
    task = state.tasks.get(e.task_id)
    if task is None and e.attempt == 1:
        task = state.task(e.task_id)
    if task is not None and task.status in (PENDING, RETRY_WAIT) and e.attempt == task.attempts + 1:
        implied = h.TaskScheduled(
            id=h.event_id(state.run_id, e.task_id, e.attempt, "scheduled"),
            run_id=state.run_id,
            ts=e.ts,
            task_id=e.task_id,
            attempt=e.attempt,
            fallback=e.fallback,
        )
        if _task_scheduled(state, implied):
            # Counted as if read, so that the late real one, a repeat by its attempt number,
            # leaves a run reporting the same number of events whichever order they came in.
            state.events += 1
    if task is None or task.status != SCHEDULED or task.attempts != e.attempt:
        return None
    return task


def _task_completed(state: RunState, e: h.TaskCompleted) -> bool:
    task = _current_attempt(state, e)
    if task is None:
        return False
    state.running -= 1
    task.error = None
    task.started_at = e.started_at
    if e.expansion is not None:
        task.status = EXPANDED
        task.expansion = Expansion.plan(e.task_id, e.expansion)
        for child in task.expansion.children:
            state.tasks[child] = TaskState(node=e.task_id)
        return True
    task.status = COMPLETED
    task.output = e.output
    task.finished_at = e.ts
    exp = _expansion_of(state, task)
    if exp is not None:
        exp.running -= 1
        exp.completed += 1
        for dependent in exp.dependents.get(e.task_id, ()):
            exp.waiting_on[dependent] -= 1
            if exp.waiting_on[dependent] == 0:
                exp.ready.append(dependent)
    return True


def _expansion_of(state: RunState, task: TaskState) -> Expansion | None:
    if task.node is None:
        return None
    return state.tasks[task.node].expansion


def _task_collected(state: RunState, e: h.TaskCollected) -> bool:
    task = state.tasks.get(e.task_id)
    if task is None or task.status != EXPANDED:
        return False
    task.status = COMPLETED
    task.output = e.output
    task.finished_at = e.ts
    return True


def _task_failed(state: RunState, e: h.TaskFailed) -> bool:
    task = _current_attempt(state, e)
    if task is None:
        return False
    state.running -= 1
    task.status = RETRY_WAIT
    task.error = e.error
    task.error_type = e.error_type
    task.traceback = e.traceback
    task.retriable = e.retriable
    task.next_retry_delay = e.next_retry_delay
    task.failed_at = e.ts
    task.started_at = e.started_at
    task.finished_at = e.ts
    exp = _expansion_of(state, task)
    if exp is not None:
        exp.retrying.add(e.task_id)
    return True


def _task_skipped(state: RunState, e: h.TaskSkipped) -> bool:
    task = state.task(e.task_id)
    if task.status not in (PENDING, RETRY_WAIT):
        return False
    exp = _expansion_of(state, task)
    if exp is not None and task.status == RETRY_WAIT:
        exp.running -= 1
        exp.retrying.discard(e.task_id)
    task.status = SKIPPED
    task.error = e.reason
    task.finished_at = e.ts
    return True


def _task_abandoned(state: RunState, e: h.TaskAbandoned) -> bool:
    task = state.task(e.task_id)
    if task.status in TASK_DONE or task.status == SCHEDULED:
        return False
    exp = _expansion_of(state, task)
    if exp is not None:
        if task.status == RETRY_WAIT:
            exp.running -= 1
        exp.retrying.discard(e.task_id)
        exp.failed = exp.failed or e.task_id
    task.status = FAILED
    task.error = e.error
    task.finished_at = e.ts
    return True


def _timer_started(state: RunState, e: h.TimerStarted) -> bool:
    if e.timer_id in state.timers:
        return False
    if e.task_id is not None and e.attempt is not None:
        task = state.tasks.get(e.task_id)
        # A retry timer starts while its task waits on the failed attempt before ``attempt``;
        # otherwise it is a repeat: it started (and fired: it is no longer pending), its
        # attempt ran, or an operator retry reopened the task since.
        if task is not None and (
            task.status != RETRY_WAIT or task.timer_id == e.timer_id or task.attempts >= e.attempt
        ):
            return False
    state.timers[e.timer_id] = e.fire_at
    if e.task_id is not None:
        task = state.task(e.task_id)
        task.timer_id = e.timer_id
        task.fire_at = e.fire_at
    return True


def _timer_fired(state: RunState, e: h.TimerFired) -> bool:
    return state.timers.pop(e.timer_id, None) is not None


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


_APPLY: dict[str, Any] = {
    "RunRequested": _run_requested,
    "TaskScheduled": _task_scheduled,
    "TaskCompleted": _task_completed,
    "TaskFailed": _task_failed,
    "TaskSkipped": _task_skipped,
    "TaskAbandoned": _task_abandoned,
    "TaskCollected": _task_collected,
    "TaskRequeued": _task_requeued,
    "TimerStarted": _timer_started,
    "TimerFired": _timer_fired,
    "RunCompleted": _run_completed,
    "RunFailed": _run_failed,
    "RunCancelRequested": _cancel_requested,
    "RunParked": _run_parked,
    "RunResumed": _run_resumed,
    "RunCancelled": _run_cancelled,
    "RunRetryRequested": _run_retry_requested,
    "SearchAttributesSet": _search_attributes_set,
}


#: What a waiting node waits for (``for``: one line for people, e.g. ``signal 'approve'``) and
#: until when at most (``deadline``: epoch seconds, ``None``: no deadline). A ``for`` key
#: (a keyword) needs this form of TypedDict.
Wait = TypedDict("Wait", {"for": str, "deadline": float | None})


class FoldExtension:
    """A feature's part of the fold: the history events it adds and how each folds.

    Subclass it, set :attr:`key`, :attr:`event_classes` (the history event classes it adds,
    subclasses of :class:`~deerflow.core.history.HistoryEvent` with a new ``type``) and
    :attr:`handles` (what it folds: by default the types of :attr:`event_classes`), and
    override :meth:`fold`. Register it with :func:`register_fold` (a node kind lists it in
    ``NodeKind.folds``: adding a node of the kind to a workflow registers it). What it keeps
    goes in ``state.extensions[key]`` (:meth:`part`): dicts, lists and scalars only. The
    fold's rules hold for its events too: one after the run ended is not passed to it, nor is
    a repeat of one of the run's last :data:`SEEN_LIMIT` events known by id (every extension
    event is: a repeat arriving later is passed again, so a fold that can should ignore it
    by its content too).
    """

    #: its part of ``RunState.extensions`` (also what names it in errors)
    key: str = ""
    #: history event classes it adds
    event_classes: tuple[type[h.HistoryEvent], ...] = ()
    #: the types it folds; ``None``: those of :attr:`event_classes`
    handles: frozenset[str] | None = None
    #: the types of its events that end a run (they must set ``state.status``, see :func:`end_run`)
    terminal: frozenset[str] = frozenset()
    #: names its part reads as on a run state (``state.<name>``, see :meth:`attribute`)
    attributes: frozenset[str] = frozenset()
    #: what the run index keeps of its part in a run's row, to list runs by: filter name
    #: (``list_runs(<name>=value)``) -> key of its part (a scalar value)
    indexed: Mapping[str, str] = {}
    #: statuses :meth:`shown_status` may give a running run (a queued run has not ended)
    live_statuses: frozenset[str] = frozenset()

    def types(self) -> frozenset[str]:
        """The event types this extension folds."""
        if self.handles is not None:
            return self.handles
        return frozenset(h.type_name(cls) for cls in self.event_classes)

    def part(self, state: RunState) -> dict[str, Any]:
        """This extension's part of ``state`` (created empty on first use)."""
        part: dict[str, Any] = state.extensions.setdefault(self.key, {})
        return part

    def fold(self, state: RunState, event: h.HistoryEvent) -> bool:
        """Apply ``event`` (one of :meth:`types`) to ``state``; return whether it changed."""
        raise NotImplementedError

    def attribute(self, state: RunState, name: str) -> Any:
        """``state.<name>`` for each of :attr:`attributes`: read from this extension's part."""
        raise AttributeError(name)

    def result_fields(self, state: RunState) -> Mapping[str, Any]:
        """Fields of the run's :class:`~deerflow.RunResult` this extension fills in; none here."""
        return {}

    # Requests (``Engine.send``): an extension whose runs take them (a state machine's
    # transitions) overrides the three; the engine appends the event and waits for the answer.

    def request(
        self, run_id: str, request_id: str, name: str, payload: Any
    ) -> h.HistoryEvent | None:
        """The event asking run ``run_id`` to take request ``name``; ``None`` here: this
        extension's runs take no requests."""
        return None

    def answered(self, state: RunState, request_id: str) -> bool:
        """Whether ``state`` resolved request ``request_id`` (applied, refused or failed)."""
        return False

    def answer(self, state: RunState, request_id: str, name: str) -> None:
        """Raise what request ``request_id`` ended with when it was not applied (refused, or
        its code failed); return when it was."""

    def shown_status(self, state: RunState) -> str | None:
        """What a running ``state`` shows as its status (one of :attr:`live_statuses`) when
        this extension holds it before it starts; ``None`` here (see :func:`status_of`)."""
        return None

    def waits(self, state: RunState) -> dict[str, Wait]:
        """The nodes of ``state`` that wait on what this extension folds: task id -> what
        each waits for and until when (none by default). :func:`waits_of` reads every
        registered extension's, so the dashboard, the CLI and the API draw any wait alike."""
        return {}


#: what folds each added event type (a few per feature: bounded by the code that registers)
_EXTENDED: dict[str, FoldExtension] = {}
#: which extension reads each added RunState attribute; the extensions that fill result fields
_ATTRIBUTES: dict[str, FoldExtension] = {}
_RESULTS: dict[str, FoldExtension] = {}
_REQUESTS: dict[str, FoldExtension] = {}
#: which extension keeps each run-index filter (FoldExtension.indexed)
_INDEXED: dict[str, FoldExtension] = {}
_SHOWN: dict[str, FoldExtension] = {}
#: RunState's own attributes, which no extension may shadow
_FIELDS = frozenset(dir(RunState))


def register_fold(extension: FoldExtension) -> None:
    """Fold :meth:`~FoldExtension.types` with ``extension`` from now on (again: a no-op).

    Raises :class:`ValueError` when another extension, or the core, folds one of its types.
    """
    _check_clashes(extension)
    h.add_event_types(extension.event_classes, terminal=extension.terminal)
    for name in extension.types():
        _EXTENDED[name] = extension
    for name in extension.attributes:
        _ATTRIBUTES[name] = extension
        setattr(RunState, name, property(_reader(extension, name)))
    for name in extension.indexed:
        _INDEXED[name] = extension
    if type(extension).result_fields is not FoldExtension.result_fields:
        _RESULTS[extension.key] = extension
    if type(extension).request is not FoldExtension.request:
        _REQUESTS[extension.key] = extension
    if extension.live_statuses:
        _SHOWN[extension.key] = extension
        LIVE_STATUSES.update(extension.live_statuses)


def _check_clashes(extension: FoldExtension) -> None:
    """Raise :class:`ValueError` when ``extension`` would take what another (or the core) has."""
    types = extension.types()
    if not extension.key or not types:
        raise ValueError(f"{type(extension).__name__}: a fold extension needs a key and types")
    clash = sorted(t for t in types if t in _APPLY or _EXTENDED.get(t, extension) is not extension)
    if clash:
        raise ValueError(f"fold extension {extension.key!r}: {clash} already folded elsewhere")
    taken = sorted(
        name
        for name in extension.attributes
        if name in _FIELDS or _ATTRIBUTES.get(name, extension) is not extension
    )
    if taken:
        raise ValueError(f"fold extension {extension.key!r}: attributes {taken} already exist")
    filters = sorted(n for n in extension.indexed if _INDEXED.get(n, extension) is not extension)
    if filters:
        raise ValueError(f"fold extension {extension.key!r}: filters {filters} already exist")


def request_takers() -> list[FoldExtension]:
    """The registered extensions whose runs take requests (``Engine.send``)."""
    return list(_REQUESTS.values())


def indexed_filters() -> dict[str, tuple[str, str]]:
    """The run-index filters the registered extensions keep: name -> (extension key, key of
    its part)."""
    return {name: (e.key, e.indexed[name]) for name, e in _INDEXED.items()}


def indexed_values(state: RunState) -> dict[str, dict[str, Any]]:
    """What the run index keeps of ``state``'s extension parts: extension key -> the
    :attr:`FoldExtension.indexed` keys of its part that are set."""
    kept: dict[str, dict[str, Any]] = {}
    for key, field_ in indexed_filters().values():
        value = state.extensions.get(key, {}).get(field_)
        if value is not None:
            kept.setdefault(key, {})[field_] = value
    return kept


def _reader(extension: FoldExtension, name: str) -> Callable[[RunState], Any]:
    def read(state: RunState) -> Any:
        return extension.attribute(state, name)

    return read


#: where a run rebuilt from a summary (a run index row) keeps the status its row showed
SHOWN = "shown_status"


def status_of(state: RunState) -> str:
    """The run's status as shown: a running run an extension holds before it starts shows
    that extension's status (``queued`` at its flow-control gate), else ``state.status``."""
    if state.status == RUN_RUNNING and _SHOWN:
        summary = state.extensions.get(SHOWN)
        if summary is not None:
            return str(summary)
        for extension in _SHOWN.values():
            shown = extension.shown_status(state)
            if shown is not None:
                return shown
    return state.status


def result_fields(state: RunState) -> dict[str, Any]:
    """What the registered fold extensions add to ``state``'s public result."""
    fields: dict[str, Any] = {}
    for extension in _RESULTS.values():
        fields.update(extension.result_fields(state))
    return fields


def waits_of(state: RunState) -> dict[str, Wait]:
    """What the run's waiting nodes wait for and until when, by task id in the run's order.

    Every registered :class:`FoldExtension` tells its own (:meth:`FoldExtension.waits`); an
    ended run, or a node that ended, waits for nothing whatever its extension kept.
    """
    if state.terminal:
        return {}
    found: dict[str, Wait] = {}
    for extension in {id(e): e for e in _EXTENDED.values()}.values():
        found.update(extension.waits(state))
    return {
        tid: found[tid]
        for tid, task in state.tasks.items()
        if tid in found and task.status not in TASK_DONE
    }


def fold_all(run_id: str, events: list[h.HistoryEvent]) -> RunState:
    """A fresh state folded from ``events`` in order."""
    state = RunState(run_id=run_id)
    for event in events:
        fold(state, event)
    return state
