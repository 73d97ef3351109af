"""The pattern decorators of :class:`deerflow.Workflow` (a mixin, so each pattern stays apart)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from deerflow.engine._definition import Workflow
    from deerflow.engine._taskdef import TaskDef

F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C", bound=type)


class Node(Protocol):
    """A declarative node (:class:`deerflow.SubWorkflow`, :func:`deerflow.parallel`, ...)."""

    def add_to(self, workflow: Workflow) -> TaskDef:
        """Add this node to ``workflow`` and return its definition."""
        ...


class PatternsMixin:
    """Decorators that add pattern nodes to a workflow."""

    #: parameters every run sees in ``context.params`` under its own (set by templates)
    default_params: Mapping[str, Any] = MappingProxyType({})

    def add_task(self, task: TaskDef) -> TaskDef:  # implemented by Workflow
        raise NotImplementedError

    def add(self, node: Node) -> TaskDef:
        """Add a declarative node: ``wf.add(SubWorkflow(...))``, ``wf.add(parallel(fn, ...))``."""
        if not hasattr(node, "add_to"):
            from deerflow.errors import DefinitionError

            raise DefinitionError(
                f"{node!r} is not a node: expected SubWorkflow, parallel(...), "
                "or another object with add_to(workflow)"
            )
        return node.add_to(self)  # type: ignore[arg-type]

    def sub_workflow(
        self,
        id: str,
        *,
        workflow: Workflow,
        depends_on: Iterable[str] = (),
        input_from: str | None = None,
        retries: int = 0,
        retry_delay: float = 1.0,
        backoff: float = 2.0,
        timeout: float | None = None,
    ) -> Callable[[F], F]:
        """Run ``workflow`` as a child run; its output becomes this node's output.

        The node is added at once, so the decorator may stand above another task's decorator
        (the spec's stacked form) or be called on its own: ``wf.sub_workflow(id=..., ...)``.
        The child's ``context.input`` is the upstream output (a dict by id for several), or
        the output of ``input_from`` alone.
        """
        from deerflow.patterns.subworkflow import SubWorkflow

        SubWorkflow(
            id=id,
            workflow=workflow,
            depends_on=depends_on,
            input_from=input_from,
            retries=retries,
            retry_delay=retry_delay,
            backoff=backoff,
            timeout=timeout,
        ).add_to(self)  # type: ignore[arg-type]

        def passthrough(fn: F) -> F:
            return fn

        return passthrough

    def parallel_tasks(
        self,
        id: str,
        *,
        depends_on: Iterable[str] = (),
        over: str | None = None,
        max_parallel: int | None = None,
        retries: int = 0,
        retry_delay: float = 1.0,
        backoff: float = 2.0,
        timeout: float | None = None,
    ) -> Callable[[F], F]:
        """Run ``fn(item, context)`` once per item of the upstream output (fan-out).

        ``context.parallel_results[id]`` downstream is the ordered list of results (fan-in).
        See :mod:`deerflow.patterns.fanout` for how the list of items is found.
        """
        from deerflow.patterns.fanout import add_parallel_tasks

        def register(fn: F) -> F:
            add_parallel_tasks(
                self,
                id,
                fn,
                depends_on,
                over=over,  # type: ignore[arg-type]
                max_parallel=max_parallel,
                retries=retries,
                retry_delay=retry_delay,
                backoff=backoff,
                timeout=timeout,
            )
            return fn

        return register

    def dynamic_tasks(
        self,
        id: str,
        *,
        depends_on: Iterable[str] = (),
        max_parallel: int | None = None,
        retries: int = 0,
        retry_delay: float = 1.0,
        backoff: float = 2.0,
        timeout: float | None = None,
    ) -> Callable[[F], F]:
        """Tasks generated at run time: ``fn(context)`` returns a list of task specs.

        The list is recorded in the run's history before any generated task runs, so a
        restart never generates it again. ``context.dynamic_outputs[id]`` downstream maps each
        generated task id to its output. Retries and ``timeout`` apply to the generator and to
        each generated task. See :mod:`deerflow.patterns.dynamic` for the spec format.
        """
        from deerflow.patterns.dynamic import add_dynamic_tasks

        def register(fn: F) -> F:
            add_dynamic_tasks(
                self,
                id,
                fn,
                depends_on,  # type: ignore[arg-type]
                max_parallel=max_parallel,
                retries=retries,
                retry_delay=retry_delay,
                backoff=backoff,
                timeout=timeout,
            )
            return fn

        return register

    def map_reduce(
        self,
        id: str,
        *,
        partitions: int | None = None,
        reduce_parallelism: int = 1,
        depends_on: Iterable[str] = (),
        max_parallel: int | None = None,
        retries: int = 0,
        retry_delay: float = 1.0,
        backoff: float = 2.0,
        timeout: float | None = None,
    ) -> Callable[[C], C]:
        """Add a :class:`deerflow.MapReduce` subclass as a node; its output is ``reduce``'s.

        ``partition(context)`` runs once; its list is grouped into at most ``partitions`` map
        tasks spread over every worker; ``reduce_parallelism`` partial reduces combine slices
        of the map results before one final ``reduce``. See :mod:`deerflow.patterns.mapreduce`.
        """
        from deerflow.patterns.mapreduce import add_map_reduce

        def register(cls: C) -> C:
            add_map_reduce(
                self,
                id,
                cls,
                depends_on,  # type: ignore[arg-type]
                partitions=partitions,
                reduce_parallelism=reduce_parallelism,
                max_parallel=max_parallel,
                retries=retries,
                retry_delay=retry_delay,
                backoff=backoff,
                timeout=timeout,
            )
            return cls

        return register
