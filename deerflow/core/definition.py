"""The core of a workflow definition: tasks, their dependencies and retry policies.

:class:`WorkflowDef` knows nothing of features. The public :class:`deerflow.Workflow`
(:mod:`deerflow.workflow`) composes it with the features' mixins (patterns, sagas, state
machines, pipelines, choreography); a feature that the core must consult at run time fills in a
generic hook here (:meth:`WorkflowDef.resolve_task`, :meth:`WorkflowDef.route_trigger`,
:meth:`WorkflowDef.has_body`, :meth:`WorkflowDef.fingerprint_extra`,
:meth:`WorkflowDef.request_refusal`,
:meth:`WorkflowDef.start_refusal`, :meth:`WorkflowDef.decide_run`,
:meth:`WorkflowDef.decide_failure`, :meth:`WorkflowDef.compensation_node`) instead of being
imported.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, TypeVar

from deerflow.core import history as h
from deerflow.core.kinds import NodeKind
from deerflow.core.retry import RetryOptions
from deerflow.core.state import RunState, register_fold
from deerflow.core.taskdef import (
    ID_PATTERN,
    RetryPolicy,
    TaskDef,
    task_priority,
)
from deerflow.errors import DefinitionError

F = TypeVar("F", bound=Callable[..., Any])
_ID = ID_PATTERN

__all__ = ["RetryPolicy", "TaskDef", "WorkflowDef", "check_acyclic"]


class WorkflowDef:
    """A named DAG of tasks: the core of :class:`deerflow.Workflow`, without its features.

    The arguments are :class:`deerflow.Workflow`'s (name, version, description, max_parallel).
    """

    def __init__(
        self,
        name: str,
        *,
        version: str = "1",
        description: str = "",
        max_parallel: int | None = None,
    ) -> None:
        if not name or not _ID.match(name):
            raise DefinitionError(
                f"invalid workflow name {name!r}: use letters, digits, '_', '-' and '.'"
            )
        if max_parallel is not None and max_parallel < 1:
            raise DefinitionError(f"workflow {name!r}: max_parallel must be >= 1")
        self.name = name
        self.version = str(version)
        self.description = description
        self.max_parallel = max_parallel
        self._tasks: dict[str, TaskDef] = {}
        self._compensations: dict[str, str] = {}
        self._ancestors: dict[str, frozenset[str]] = {}
        self._fingerprint: str | None = None
        self._order: list[str] | None = None
        self._off_worker: frozenset[str] | None = None
        self.triggers: list[Any] = []
        #: parameters every run sees in ``context.params`` under its own (set by templates)
        self.default_params: Mapping[str, Any] = MappingProxyType({})
        #: runtime plugins an engine serving this workflow adopts (deerflow.runtime.Plugin)
        self.plugins: list[Any] = []

    # -- definition --------------------------------------------------------------------------

    def task(
        self,
        id: str | None = None,
        *,
        depends_on: Iterable[str] = (),
        retries: int = 0,
        retry_delay: float = 1.0,
        backoff: float = 2.0,
        max_retry_delay: float = 300.0,
        timeout: float | None = None,
        fallback: Callable[..., Any] | None = None,
        compensate: Any = None,
        priority: int | None = None,
    ) -> Callable[[F], F]:
        """Register a function as a task; it receives a :class:`TaskContext` and returns JSON.

        Sync functions run in a thread, async ones on the event loop. ``fallback`` (a function
        of the context, sync or async) supplies the output when every retry has failed.
        ``compensate`` (a function ``(context, output)`` or a :class:`CompensatingAction`)
        undoes this task if the run fails later: the run then rolls back and ends
        ``compensated`` (see :mod:`deerflow.sagas`). ``priority``: where attempts queue for a
        worker slot, a higher one starts first (default: the run's ``priority``).
        """
        options = RetryOptions(retries, retry_delay, backoff, max_retry_delay, timeout)
        policy = options.policy(self.name, id)
        if isinstance(depends_on, str):
            raise DefinitionError(
                f"workflow {self.name!r}, task {id!r}: depends_on must be a list of task ids"
            )

        def register(fn: F) -> F:
            task_id = id or fn.__name__
            self.add_task(
                TaskDef(
                    id=task_id,
                    fn=fn,
                    depends_on=tuple(depends_on),
                    retry=policy,
                    timeout=options.attempt_timeout(self.name, task_id),
                    fallback=fallback,
                    priority=priority,
                    compensation=(
                        None if compensate is None else self.compensation_node(task_id, compensate)
                    ),
                )
            )
            return fn

        return register

    def compensation_node(self, step_id: str, compensate: Any) -> TaskDef:
        """Hook: the node that undoes ``step_id`` (``compensate=`` of :meth:`task`); sagas
        supply it, the bare core has none."""
        raise DefinitionError(
            f"workflow {self.name!r}, task {step_id!r}: compensate= needs the sagas feature"
            " (use deerflow.Workflow)"
        )

    def add_task(self, task: TaskDef) -> TaskDef:
        """Add a node (used by the decorators and by pattern modules); validates the DAG."""
        where = f"workflow {self.name!r}, task {task.id!r}"
        if not task.id or not _ID.match(task.id):
            raise DefinitionError(f"{where}: invalid task id (letters, digits, '_', '-', '.')")
        if task.id in self._tasks:
            raise DefinitionError(f"{where}: duplicate task id")
        if isinstance(task.depends_on, str):
            raise DefinitionError(f"{where}: depends_on must be a list of task ids")
        # A dependency may name a task declared later (checked by validate(), once the
        # definition is complete); a loop is refused by the declaration that closes it.
        for dep in task.depends_on:
            loop = [task.id] if dep == task.id else self._path_back(task.id, dep)
            if loop is not None:
                # Told from the loop's first declared task, as the file reads: a → b → a.
                ring = [task.id, *loop[:-1]]
                start = min(range(len(ring)), key=lambda i: self._declared(ring[i]))
                ring = ring[start:] + ring[:start]
                raise DefinitionError(f"{where}: {_cycle([*ring, ring[0]])}")
        if task.fn is not None and not callable(task.fn):
            raise DefinitionError(f"{where}: the task body is not callable")
        task_priority(self.name, task.id, task.priority)
        self._check_kind(task)
        comp = task.compensation
        if comp is not None:
            self._check_kind(comp)
            if comp.id in self._tasks or comp.id in self._compensations or comp.id == task.id:
                raise DefinitionError(f"{where}: compensation id {comp.id!r} is already used")
            self._compensations[comp.id] = task.id
        if task.id in self._compensations:
            raise DefinitionError(f"{where}: id already used by a compensation")
        self._tasks[task.id] = task
        self._order = None
        self._off_worker = None
        self._ancestors.clear()
        self._fingerprint = None
        return task

    def _check_kind(self, task: TaskDef) -> None:
        """Validate ``task``'s options into its kind's model (errors name the task)."""
        if not isinstance(task.kind, NodeKind):
            raise DefinitionError(
                f"workflow {self.name!r}, task {task.id!r}: kind must be a NodeKind,"
                f" got {task.kind!r}"
            )
        task.options = task.kind.parse_options(self.name, task.id, task.options)
        for extension in task.kind.folds:  # its history events fold from now on
            try:
                register_fold(extension)
            except ValueError as exc:
                raise DefinitionError(f"workflow {self.name!r}, task {task.id!r}: {exc}") from None

    def _path_back(self, start: str, dep: str) -> list[str] | None:
        """A path ``dep -> ... -> start`` through the declared tasks' dependencies, or ``None``."""
        stack, seen = [[dep]], set()
        while stack:
            path = stack.pop()
            if path[-1] == start:
                return path
            if path[-1] not in seen:
                seen.add(path[-1])
                node = self._tasks.get(path[-1])
                stack += [[*path, nxt] for nxt in (node.depends_on if node else ())]
        return None

    def _declared(self, task_id: str) -> int:
        """Where ``task_id`` stands in declaration order (a task being added comes last)."""
        ids = list(self._tasks)
        return ids.index(task_id) if task_id in self._tasks else len(ids)

    def _unknown_dependency(self) -> str | None:
        """The first dependency naming no declared task, described, or ``None``."""
        for task in self._tasks.values():
            for dep in task.depends_on:
                if dep not in self._tasks:
                    return (
                        f"workflow {self.name!r}, task {task.id!r}: depends_on names unknown"
                        f" task {dep!r} (known: {', '.join(sorted(self._tasks))})"
                    )
        return None

    def add_trigger(self, trigger: Any) -> Any:
        """Attach a trigger (``S3Event``, ``KafkaEvent``, ``WebhookEvent``, ``Schedule``).

        Raises:
            DefinitionError: the trigger cannot work here (an invalid cron expression, an
                unknown time zone...), naming this workflow.
        """
        attached = getattr(trigger, "attached", None)
        if callable(attached):  # the spec checks itself as this workflow's (events.py)
            attached(self.name)
        self.triggers.append(trigger)
        return trigger

    # -- queries -----------------------------------------------------------------------------

    @property
    def tasks(self) -> Mapping[str, TaskDef]:
        """Tasks by id, in definition order."""
        return self._tasks

    def get(self, task_id: str) -> TaskDef:
        """The task (or compensation) named ``task_id``; ``KeyError`` naming the workflow."""
        task = self._tasks.get(task_id)
        if task is not None:
            return task
        step = self._compensations.get(task_id)
        if step is not None:
            comp = self._tasks[step].compensation
            assert comp is not None
            return comp
        found = self.resolve_task(task_id)
        if found is not None:
            return found
        raise KeyError(f"workflow {self.name!r} has no task {task_id!r}")

    def resolve_task(self, task_id: str) -> TaskDef | None:
        """Hook: a task that is not declared but made on demand (a state machine's
        ``transition@request``); ``None`` here."""
        return None

    def route_trigger(self, event: Any) -> tuple[str, str] | None:
        """Hook: the ``(instance, transition)`` a trigger event asks for (state machines)."""
        return None

    @property
    def compensations(self) -> Mapping[str, str]:
        """Compensation task ids mapped to the step each one undoes."""
        return self._compensations

    def compensated_step(self, task_id: str) -> str | None:
        """The step a compensation task undoes, or ``None`` if ``task_id`` is not one."""
        return self._compensations.get(task_id)

    @property
    def order(self) -> list[str]:
        """Task ids in a topological order: definition order, each task after what it needs."""
        if self._order is None:
            order: list[str] = []
            placed: set[str] = set()
            for first in self._tasks:
                stack = [first]  # depth first, iterative: chains may be long
                while stack:
                    node = stack[-1]
                    if node in placed:
                        stack.pop()
                        continue
                    needed = [
                        d
                        for d in self._tasks[node].depends_on
                        if d not in placed and d in self._tasks
                    ]
                    if needed:
                        stack.extend(reversed(needed))
                    else:
                        placed.add(node)
                        order.append(node)
                        stack.pop()
            self._order = order
        return self._order

    @property
    def off_worker(self) -> frozenset[str]:
        """The declared tasks whose scheduled attempts no worker runs (their kind's
        ``runs_on_worker`` says not): cached, as the decider asks at every decision."""
        if self._off_worker is None:
            self._off_worker = frozenset(
                tid for tid, task in self._tasks.items() if not task.kind.runs_on_worker(task)
            )
        return self._off_worker

    def dependents(self, task_id: str) -> list[str]:
        """Tasks that list ``task_id`` in ``depends_on``."""
        return [t.id for t in self._tasks.values() if task_id in t.depends_on]

    def sinks(self) -> list[str]:
        """Tasks nothing depends on: their outputs make the run's output."""
        used = {dep for t in self._tasks.values() for dep in t.depends_on}
        return [tid for tid in self._tasks if tid not in used]

    def ancestors(self, task_id: str) -> frozenset[str]:
        """Every task ``task_id`` depends on, directly or not (cached per definition)."""
        cached = self._ancestors.get(task_id)
        if cached is not None:
            return cached
        seen: set[str] = set()
        stack = list(self.get(task_id).depends_on)
        while stack:
            dep = stack.pop()
            if dep not in seen:
                seen.add(dep)
                stack.extend(self._tasks[dep].depends_on)
        result = self._ancestors[task_id] = frozenset(seen)
        return result

    def shape(self) -> dict[str, list[str]]:
        """Task ids and their dependencies, recorded in each run to describe later changes."""
        return {t.id: list(t.depends_on) for t in self._tasks.values()}

    def fingerprint(self) -> str:
        """A hash of the DAG's shape (ids, kinds, edges), recorded in each run's history."""
        if self._fingerprint is None:
            self._fingerprint = self._compute_fingerprint()
        return self._fingerprint

    def _compute_fingerprint(self) -> str:
        # Sorted: declaring the same tasks in another order changes nothing a run relies on.
        shape = ";".join(
            f"{t.id}:{t.kind.name}:{','.join(sorted(t.depends_on))}:"
            f"{t.compensation.id if t.compensation else ''}"
            for t in sorted(self._tasks.values(), key=lambda t: t.id)
        )
        extra = self.fingerprint_extra()
        if extra:
            shape += "|" + extra
        return hashlib.sha256(shape.encode()).hexdigest()[:16]

    def validate(self) -> None:
        """Check the whole definition; raises :class:`DefinitionError` naming the problem."""
        if not self._tasks and not self.has_body():
            raise DefinitionError(f"workflow {self.name!r} has no tasks")
        unknown = self._unknown_dependency()
        if unknown is not None:
            raise DefinitionError(unknown)
        _check_acyclic(self.name, {t.id: t.depends_on for t in self._tasks.values()})

    def has_body(self) -> bool:
        """Hook: whether something other than tasks makes up this workflow (a state machine,
        a pipeline, event handlers), so that it is valid without tasks."""
        return False

    def fingerprint_extra(self) -> str:
        """Hook: what a feature's declaration adds to the fingerprint (a state machine's
        states and transitions); ``""`` here: the tasks are the whole shape."""
        return ""

    def takes_requests(self) -> bool:
        """Hook: whether runs of this workflow take requests (``Engine.send``: a state
        machine's transitions); ``False`` here."""
        return False

    def request_refusal(self, request: str, state: str | None) -> str | None:
        """Hook: why a run of this workflow in ``state`` refuses ``request``, or ``None``
        (asked only when :meth:`takes_requests`)."""
        return None

    def decide_run(self, state: RunState, now: float) -> list[h.HistoryEvent] | None:
        """Hook: the next events of a run this workflow decides as a whole (a state machine),
        instead of by its tasks; ``None`` here: the tasks decide."""
        return None

    def decide_failure(
        self, state: RunState, now: float, failed_task: str, error: str
    ) -> list[h.HistoryEvent] | None:
        """Hook: the next events of a run whose task ``failed_task`` failed for good, when a
        feature ends it its own way (a saga rolls back); ``None`` here: the run fails.

        A terminal event last in the list ends the run (the parent of a child run hears of it).
        """
        return None

    def dispatch_extra(self, state: RunState) -> dict[str, Any]:
        """Hook: what every attempt of a run sees beside its kind's inputs (a batch's trigger
        events, read as ``context.trigger_events``); nothing here."""
        return {}

    def on_ending(self, state: RunState, now: float) -> list[h.HistoryEvent]:
        """Hook: events of the run recorded just before the core's terminal event (completed,
        failed, cancelled), so that a feature hears of the end in the run's own history (flow
        control frees the run's slot); none here."""
        return []

    def ending_reports_to(self, state: RunState) -> list[h.ParentRef]:
        """Hook: parent task attempts, besides the run's own parent's, that hear of its end as
        that one does (a batch's run tells those of the sub-workflow runs it took); none here."""
        return []

    def request_events(self, request: h.RunRequested) -> list[h.HistoryEvent]:
        """Hook: events of the run appended with its ``request``, in the same write (flow
        control queues the run at once: it shows queued from its request, and waits for no
        decision of its owner first); none here."""
        return []

    def start_refusal(self) -> str | None:
        """Hook: why this workflow has no runs in the history (a pipeline), else ``None``."""
        return None

    def __repr__(self) -> str:
        return f"Workflow(name={self.name!r}, version={self.version!r}, tasks={list(self._tasks)})"


def _cycle(path: list[str]) -> str:
    """How a closed dependency loop reads in errors: ``dependency cycle: a → b → a``."""
    return "dependency cycle: " + " → ".join(path)


def _check_acyclic(workflow: str, edges: Mapping[str, Iterable[str]]) -> None:
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in edges.get(node, ()):
            if state.get(dep) == 1:
                loop = [*path[path.index(dep) :], dep] if dep in path else [dep, dep]
                raise DefinitionError(f"workflow {workflow!r}, task {node!r}: {_cycle(loop)}")
            if dep not in state:
                visit(dep, [*path, dep])
        state[node] = 2

    for node in edges:
        if node not in state:
            visit(node, [node])


def check_acyclic(workflow: str, edges: Mapping[str, Iterable[str]]) -> None:
    """Raise :class:`DefinitionError` naming a cycle in ``edges`` (node -> dependencies)."""
    _check_acyclic(workflow, edges)
