"""The pattern decorators of :class:`deerflow.Workflow` (a mixin, so each pattern stays apart)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from deerflow.engine._definition import Workflow
    from deerflow.engine._taskdef import TaskDef

F = TypeVar("F", bound=Callable[..., Any])


class PatternsMixin:
    """Decorators that add pattern nodes to a workflow."""

    def add_task(self, task: TaskDef) -> TaskDef:  # implemented by Workflow
        raise NotImplementedError

    def sub_workflow(
        self,
        id: str,  # noqa: A002 - the spec's keyword
        *,
        workflow: Workflow,
        depends_on: Iterable[str] = (),
        retries: int = 0,
        retry_delay: float = 1.0,
        backoff: float = 2.0,
        timeout: float | None = None,
    ) -> Callable[[F], F]:
        """Run ``workflow`` as a child run; its output becomes this node's output.

        The node is added at once, so the decorator may stand above another task's decorator
        (the spec's stacked form) or be called on its own: ``wf.sub_workflow(id=..., ...)``.
        The child's ``context.input`` is the upstream output (a dict by id for several).
        """
        from deerflow.patterns.subworkflow import add_sub_workflow

        add_sub_workflow(self, id, workflow, depends_on, retries=retries,
                         retry_delay=retry_delay, backoff=backoff, timeout=timeout)

        def passthrough(fn: F) -> F:
            return fn

        return passthrough

    def parallel_tasks(
        self,
        id: str,  # noqa: A002 - the spec's keyword
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
            add_parallel_tasks(self, id, fn, depends_on, over=over, max_parallel=max_parallel,
                               retries=retries, retry_delay=retry_delay, backoff=backoff,
                               timeout=timeout)
            return fn

        return register
