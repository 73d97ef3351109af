"""Fan-out / fan-in: run a function once per item of an upstream list, gather the results.

How the items are found (``over=``):

* ``over="split.chunks"``: key ``chunks`` of task ``split``'s output;
* ``over="chunks"``: key ``chunks`` of the only upstream task's output;
* no ``over``: the only upstream task's output if it is a list, or its only list-valued key
  (the spec's ``{"chunks": [...]}``). Anything ambiguous fails the node with an error that
  says to pass ``over=``.

Each item becomes a child task ``id/N``; ``context.parallel_results[id]`` downstream is the
list of results in item order. ``max_parallel`` bounds children running at once.

The functional form builds the same node as a value, and reads the results back::

    workflow.add(parallel(process_chunk, over="split.chunks", id="process_chunks"))

    @workflow.task(id="merge", depends_on=["process_chunks"])
    def merge(context):
        return merge_datasets(gather("process_chunks"))
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from deerflow.core import RetryOptions, TaskDef, WorkflowDef
from deerflow.core.child import child_body
from deerflow.errors import DeerflowError, DefinitionError, NonRetryableError
from deerflow.patterns._expanding import PARALLEL_TASKS
from deerflow.runtime import TaskContext
from deerflow.runtime.integration import current_task


@dataclass
class FanOut:
    """The expander of a ``parallel_tasks`` node."""

    fn: Callable[..., Any]
    max_parallel: int | None = None
    child_sees_upstream: bool = False

    def plan(self, returned: Any, node_id: str) -> list[dict[str, Any]]:
        """One child per item; the item travels in the spec."""
        return [{"id": str(i), "item": item} for i, item in enumerate(returned)]

    def child_callable(self, spec: dict[str, Any]) -> Callable[[TaskContext], Any]:
        """``fn(item, context)``."""
        return child_body(self.fn, lambda ctx: (spec["item"], ctx))

    def collect(self, specs: Sequence[dict[str, Any]], outputs: Sequence[Any]) -> Any:
        """Results in item order."""
        return list(outputs)


def find_items(
    node_id: str, depends_on: Sequence[str], over: str | None, context: TaskContext
) -> list[Any]:
    """The list to fan out over, as the module docstring describes."""
    source, key = over.split(".", 1) if over and "." in over else ("", over or "")
    if not source:
        if len(depends_on) != 1:
            raise NonRetryableError(
                f"task {node_id!r} depends on {list(depends_on)}: pass over='task.key' to say "
                "which list to fan out over",
                task_id=node_id,
            )
        source = depends_on[0]
    value = context.tasks[source].output
    if key:
        if not isinstance(value, dict) or key not in value:
            raise NonRetryableError(
                f"task {node_id!r}: output of {source!r} has no key {key!r}", task_id=node_id
            )
        value = value[key]
    elif isinstance(value, dict):
        lists = [v for v in value.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise NonRetryableError(
                f"task {node_id!r}: output of {source!r} has {len(lists)} list values; pass "
                f"over='{source}.<key>'",
                task_id=node_id,
            )
        value = lists[0]
    if not isinstance(value, list):
        raise NonRetryableError(
            f"task {node_id!r}: fan-out source {source!r} is {type(value).__name__}, not a list",
            task_id=node_id,
        )
    return value


def add_parallel_tasks(
    wf: WorkflowDef,
    node_id: str,
    fn: Callable[..., Any],
    depends_on: Iterable[str],
    *,
    over: str | None,
    max_parallel: int | None,
    retry: RetryOptions,
) -> TaskDef:
    """Add a fan-out node to ``wf``."""
    deps = tuple(depends_on)
    where = f"workflow {wf.name!r}, task {node_id!r}"
    if max_parallel is not None and max_parallel < 1:
        raise DefinitionError(f"{where}: max_parallel must be >= 1")
    if over and "." in over and over.split(".", 1)[0] not in deps:
        raise DefinitionError(f"{where}: over={over!r} names a task not in depends_on")
    if not deps:
        raise DefinitionError(f"{where}: parallel_tasks needs depends_on (the list's source)")

    def planner(context: TaskContext) -> list[Any]:
        return find_items(node_id, deps, over, context)

    return wf.add_task(
        TaskDef(
            id=node_id,
            fn=planner,
            depends_on=deps,
            retry=retry.policy(wf.name, node_id),
            timeout=retry.attempt_timeout(wf.name, node_id),
            kind=PARALLEL_TASKS,
            options={"expander": FanOut(fn, max_parallel), "pattern": "parallel"},
        )
    )


@dataclass(frozen=True)
class ParallelNode:
    """A fan-out node as a value (what :func:`parallel` returns); add it with ``wf.add``."""

    fn: Callable[..., Any]
    over: str | None
    id: str
    depends_on: tuple[str, ...]
    max_parallel: int | None = None
    retry: RetryOptions = field(default_factory=RetryOptions)

    def add_to(self, wf: WorkflowDef) -> TaskDef:
        """Add the fan-out node to ``wf``."""
        return add_parallel_tasks(
            wf,
            self.id,
            self.fn,
            self.depends_on,
            over=self.over,
            max_parallel=self.max_parallel,
            retry=self.retry,
        )


def parallel(
    fn: Callable[..., Any],
    *,
    over: str | None = None,
    id: str | None = None,
    depends_on: Iterable[str] | None = None,
    max_parallel: int | None = None,
    retries: int = 0,
    retry_delay: float = 1.0,
    backoff: float = 2.0,
    timeout: float | None = None,
) -> ParallelNode:
    """Fan-out as a value: run ``fn(item, context)`` once per item; add it with ``wf.add``.

    The functional twin of ``@workflow.parallel_tasks``::

        workflow.add(parallel(process_chunk, over="split.chunks", id="process_chunks"))

    Args:
        fn: called once per item as ``fn(item, context)``, sync or async.
        over: ``"task.key"`` (or ``"task"`` for a task whose output is the list).
        id: the node's task id (default: ``fn``'s name).
        depends_on: upstream tasks (default: the task named in ``over``).
        max_parallel: items processed at once (default: no limit).
        retries, retry_delay, backoff, timeout: per item, as for tasks.
    """
    source = over.split(".", 1)[0] if over else None
    if depends_on is None:
        if source is None:
            raise DefinitionError("parallel(...) needs over='task.key' or depends_on=[...]")
        depends_on = (source,)
    node_over = over if over and "." in over else None
    return ParallelNode(
        fn=fn,
        over=node_over,
        id=id or fn.__name__,
        depends_on=tuple(depends_on),
        max_parallel=max_parallel,
        retry=RetryOptions(retries, retry_delay, backoff, timeout=timeout),
    )


def gather(node_id: str, context: TaskContext | None = None) -> Any:
    """Fan-in: the results of upstream node ``node_id`` as the running task sees them.

    For a fan-out node: the list of results in item order (``context.parallel_results[id]``);
    for a dynamic-tasks node: generated task id -> output. ``context`` defaults to the task
    running in this thread or coroutine; ``node_id`` must be in the task's ``depends_on``.
    """
    ctx = context if context is not None else current_task.get()
    if ctx is None:
        raise DeerflowError(f"gather({node_id!r}) is called outside a task: pass context=")
    return ctx.parallel_results[node_id]
