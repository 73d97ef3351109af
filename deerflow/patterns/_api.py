"""The pattern decorators of :class:`deerflow.Workflow` (a mixin, so each pattern stays apart)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar

from deerflow.core import RetryOptions, TaskDef, WorkflowDef
from deerflow.errors import DefinitionError
from deerflow.patterns.dynamic import add_dynamic_tasks
from deerflow.patterns.fanout import add_parallel_tasks
from deerflow.patterns.mapreduce import add_map_reduce
from deerflow.patterns.subworkflow import SubWorkflow

F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C", bound=type)


class Node(Protocol):
    """A declarative node (:class:`deerflow.SubWorkflow`, :func:`deerflow.parallel`, ...)."""

    def add_to(self, workflow: WorkflowDef) -> TaskDef:
        """Add this node to ``workflow`` and return its definition."""
        ...


class PatternsMixin(WorkflowDef):
    """Decorators that add pattern nodes to a workflow."""

    def add(self, node: Node) -> TaskDef:
        """Add a declarative node: ``wf.add(SubWorkflow(...))``, ``wf.add(parallel(fn, ...))``."""
        if not hasattr(node, "add_to"):
            raise DefinitionError(
                f"{node!r} is not a node: expected SubWorkflow, parallel(...), "
                "or another object with add_to(workflow)"
            )
        return node.add_to(self)

    def sub_workflow(
        self,
        id: str,
        *,
        workflow: WorkflowDef,
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
        SubWorkflow(
            id=id,
            workflow=workflow,
            depends_on=depends_on,
            input_from=input_from,
            retries=retries,
            retry_delay=retry_delay,
            backoff=backoff,
            timeout=timeout,
        ).add_to(self)

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

        def register(fn: F) -> F:
            add_parallel_tasks(
                self,
                id,
                fn,
                depends_on,
                over=over,
                max_parallel=max_parallel,
                retry=RetryOptions(retries, retry_delay, backoff, timeout=timeout),
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

        def register(fn: F) -> F:
            add_dynamic_tasks(
                self,
                id,
                fn,
                depends_on,
                max_parallel=max_parallel,
                retry=RetryOptions(retries, retry_delay, backoff, timeout=timeout),
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

        def register(cls: C) -> C:
            add_map_reduce(
                self,
                id,
                cls,
                depends_on,
                partitions=partitions,
                reduce_parallelism=reduce_parallelism,
                max_parallel=max_parallel,
                retry=RetryOptions(retries, retry_delay, backoff, timeout=timeout),
            )
            return cls

        return register
