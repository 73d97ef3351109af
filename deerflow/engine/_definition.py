"""Workflow definitions: tasks, their dependencies and retry policies, validated when defined."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from deerflow.choreography import ChoreographyMixin
from deerflow.engine._taskdef import (
    ID_PATTERN,
    CompensatingAction,
    RetryPolicy,
    TaskDef,
    compensation_task,
    positive_or_none,
    retry_policy,
)
from deerflow.errors import DefinitionError
from deerflow.patterns._api import PatternsMixin
from deerflow.patterns._catalog import remember
from deerflow.pipeline._api import PipelineMixin

if TYPE_CHECKING:
    from deerflow.engine._results import RunResult
    from deerflow.statemachine import MachineSpec

F = TypeVar("F", bound=Callable[..., Any])
S = TypeVar("S", bound=type[Any])
_ID = ID_PATTERN

__all__ = ["RetryPolicy", "TaskDef", "Workflow", "check_acyclic", "ensure_loop_free"]


class Workflow(PatternsMixin, ChoreographyMixin, PipelineMixin):
    """A named DAG of tasks.

    Example::

        wf = Workflow(name="etl")

        @wf.task(id="extract")
        def extract(context):
            return {"rows": [1, 2, 3]}

        @wf.task(id="load", depends_on=["extract"], retries=3)
        async def load(context):
            return {"n": len(context.tasks["extract"].output["rows"])}

        result = wf.run()

    Args:
        name: unique name of the workflow; runs refer to it.
        version: bump when changing tasks of a workflow with runs in flight.
        description: free text shown by the CLI and dashboard.
        max_parallel: at most this many tasks of one run running at once (``None``: no
            limit); children of fan-outs, dynamic tasks and map-reduces count one each.
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
        self._refused: dict[str, tuple[str, ...]] = {}  # task id -> depends_on, not defined
        self._ancestors: dict[str, frozenset[str]] = {}
        self._fingerprint: str | None = None
        self.machine: MachineSpec | None = None
        self._machine_tasks: dict[str, TaskDef] = {}
        self._machine_instance: Any = None
        self._order: list[str] | None = None
        self.triggers: list[Any] = []
        remember(self)  # compose_workflows(...) finds workflows by name

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
        compensate: Callable[..., Any] | CompensatingAction | None = None,
    ) -> Callable[[F], F]:
        """Register a function as a task; it receives a :class:`TaskContext` and returns JSON.

        Sync functions run in a thread, async ones on the event loop. ``fallback`` (a function
        of the context, sync or async) supplies the output when every retry has failed.
        ``compensate`` (a function ``(context, output)`` or a :class:`CompensatingAction`)
        undoes this task if the run fails later: the run then rolls back and ends
        ``compensated`` (see :mod:`deerflow.sagas`).
        """
        policy = retry_policy(self.name, id, retries, retry_delay, backoff, max_retry_delay)
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
                    timeout=positive_or_none(self.name, task_id, "timeout", timeout),
                    fallback=fallback,
                    compensation=compensation_task(self.name, task_id, compensate),
                )
            )
            return fn

        return register

    def add_task(self, task: TaskDef) -> TaskDef:
        """Add a node (used by the decorators and by pattern modules); validates the DAG."""
        where = f"workflow {self.name!r}, task {task.id!r}"
        if not task.id or not _ID.match(task.id):
            raise DefinitionError(f"{where}: invalid task id (letters, digits, '_', '-', '.')")
        if task.id in self._tasks:
            raise DefinitionError(f"{where}: duplicate task id")
        if isinstance(task.depends_on, str):
            raise DefinitionError(f"{where}: depends_on must be a list of task ids")
        for dep in task.depends_on:
            if dep not in self._tasks:
                raise DefinitionError(f"{where}: {self._missing_dependency(task, dep)}")
        if task.fn is not None and not callable(task.fn):
            raise DefinitionError(f"{where}: the task body is not callable")
        comp = task.compensation
        if comp is not None:
            if comp.id in self._tasks or comp.id in self._compensations or comp.id == task.id:
                raise DefinitionError(f"{where}: compensation id {comp.id!r} is already used")
            self._compensations[comp.id] = task.id
        if task.id in self._compensations:
            raise DefinitionError(f"{where}: id already used by a compensation")
        self._tasks[task.id] = task
        self._refused.pop(task.id, None)
        self._order = None
        self._ancestors.clear()
        self._fingerprint = None
        return task

    def _missing_dependency(self, task: TaskDef, dep: str) -> str:
        """Why ``dep`` cannot be a dependency of ``task``: a cycle, or a task not defined yet.

        Tasks refused for naming a task not defined yet are remembered with their
        dependencies, so that defining that task next, depending back on them, is reported
        as the cycle it is rather than as one more unknown task.
        """
        cycle = _path_back(task.id, dep, self._refused)
        if cycle is not None:
            return f"dependency cycle {' -> '.join([task.id, *cycle])}"
        self._refused[task.id] = task.depends_on
        return (
            f"depends_on names unknown task {dep!r}"
            f" (known: {', '.join(sorted(self._tasks)) or 'none'};"
            " define a task before the tasks that depend on it)"
        )

    def saga(self, cls: S) -> S:
        """Add the steps of a :class:`deerflow.Saga` subclass, with their compensations."""
        from deerflow.sagas import add_saga

        add_saga(self, cls)
        return cls

    def add_trigger(self, trigger: Any) -> Any:
        """Attach a trigger (``S3Event``, ``KafkaEvent``, ``WebhookEvent``) that starts runs."""
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
        if self.machine is not None and "@" in task_id:
            return self._transition_task(task_id)
        raise KeyError(f"workflow {self.name!r} has no task {task_id!r}")

    def _transition_task(self, task_id: str) -> TaskDef:
        name = task_id.partition("@")[0]
        cached = self._machine_tasks.get(name)
        if cached is None:
            from deerflow.statemachine._runner import transition_task

            assert self.machine is not None
            cached = self._machine_tasks[name] = transition_task(
                self.machine, self._machine_instance, name
            )
        return cached

    def route_trigger(self, event: Any) -> tuple[str, str] | None:
        """For a state machine: the ``(instance, transition)`` a trigger event asks for."""
        if self.machine is None:
            return None
        routed: tuple[str, str] | None = self._machine_instance.route(event)
        return routed

    def state_machine(self, cls: S) -> S:
        """Make this workflow a durable state machine defined by a ``StateMachine`` subclass."""
        spec = getattr(cls, "__deerflow_machine__", None)
        if spec is None:
            raise DefinitionError(
                f"workflow {self.name!r}: @state_machine expects a StateMachine subclass"
            )
        if self._tasks or self.machine is not None:
            raise DefinitionError(
                f"workflow {self.name!r}: a state machine workflow has no "
                "other tasks and one machine"
            )
        self.machine = spec
        self._machine_instance = cls()
        self._fingerprint = None
        return cls

    @property
    def compensations(self) -> Mapping[str, str]:
        """Compensation task ids mapped to the step each one undoes."""
        return self._compensations

    def compensated_step(self, task_id: str) -> str | None:
        """The step a compensation task undoes, or ``None`` if ``task_id`` is not one."""
        return self._compensations.get(task_id)

    @property
    def order(self) -> list[str]:
        """Task ids in a topological order (definition order already is one)."""
        if self._order is None:
            self._order = list(self._tasks)
        return self._order

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
            f"{t.id}:{t.kind}:{','.join(sorted(t.depends_on))}:"
            f"{t.compensation.id if t.compensation else ''}"
            for t in sorted(self._tasks.values(), key=lambda t: t.id)
        )
        if self.machine is not None:
            shape += "|machine:" + self.machine.fingerprint()
        return hashlib.sha256(shape.encode()).hexdigest()[:16]

    def validate(self) -> None:
        """Check the whole definition; raises :class:`DefinitionError` naming the problem."""
        if (
            not self._tasks
            and self.machine is None
            and getattr(self, "_pipeline", None) is None
            and not self.event_handlers
        ):  # a service of event handlers only
            raise DefinitionError(f"workflow {self.name!r} has no tasks")
        _check_acyclic(self.name, {t.id: t.depends_on for t in self._tasks.values()})

    # -- running -----------------------------------------------------------------------------

    def run(
        self,
        params: Mapping[str, Any] | None = None,
        *,
        input: Any = None,
        store: str | None = None,
        timeout: float | None = None,
        run_id: str | None = None,
    ) -> RunResult:
        """Run to completion on an embedded engine and return the result (blocking).

        ``store`` defaults to ``DEERFLOW_STORE``, else an SQLite file in the working directory.
        From async code use :class:`deerflow.Engine` instead.
        """
        if self._pipeline is not None:
            return self._run_pipeline(params, input=input, timeout=timeout, run_id=run_id)
        from deerflow.engine._engine import run_sync

        return run_sync(
            self, params=params, input=input, store=store, timeout=timeout, run_id=run_id
        )

    def __repr__(self) -> str:
        return f"Workflow(name={self.name!r}, version={self.version!r}, tasks={list(self._tasks)})"


def _path_back(start: str, dep: str, edges: Mapping[str, Iterable[str]]) -> list[str] | None:
    """A path ``dep -> ... -> start`` through ``edges`` (node -> dependencies), or ``None``."""
    stack, seen = [[dep]], set()
    while stack:
        path = stack.pop()
        if path[-1] == start:
            return path
        if path[-1] not in seen:
            seen.add(path[-1])
            stack += [[*path, nxt] for nxt in edges.get(path[-1], ())]
    return None


def _check_acyclic(workflow: str, edges: Mapping[str, Iterable[str]]) -> None:
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in edges.get(node, ()):
            if state.get(dep) == 1:
                cycle = " -> ".join([*path[path.index(dep) :], dep]) if dep in path else dep
                raise DefinitionError(
                    f"workflow {workflow!r}, task {node!r}: dependency cycle {cycle}"
                )
            if dep not in state:
                visit(dep, [*path, dep])
        state[node] = 2

    for node in edges:
        if node not in state:
            visit(node, [node])


def check_acyclic(workflow: str, edges: Mapping[str, Iterable[str]]) -> None:
    """Raise :class:`DefinitionError` naming a cycle in ``edges`` (node -> dependencies)."""
    _check_acyclic(workflow, edges)


def ensure_loop_free() -> None:
    """Raise a clear error when a blocking helper is called inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(
        "Workflow.run() blocks; inside async code use "
        "`async with Engine(...) as engine: await (await engine.start(wf)).result()`"
    )
