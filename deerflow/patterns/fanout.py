"""Fan-out / fan-in: run a function once per item of an upstream list, gather the results.

How the items are found (``over=``):

* ``over="split.chunks"``: key ``chunks`` of task ``split``'s output;
* ``over="chunks"``: key ``chunks`` of the only upstream task's output;
* no ``over``: the only upstream task's output if it is a list, or its only list-valued key
  (the spec's ``{"chunks": [...]}``). Anything ambiguous fails the node with an error that
  says to pass ``over=``.

Each item becomes a child task ``id/N``; ``context.parallel_results[id]`` downstream is the
list of results in item order. ``max_parallel`` bounds children running at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from deerflow.engine._context import TaskContext
from deerflow.engine._taskdef import TaskDef, positive_or_none, retry_policy
from deerflow.errors import DefinitionError, NonRetryableError
from deerflow.patterns._child import child_body

if TYPE_CHECKING:
    from deerflow.engine._definition import Workflow


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


def find_items(node_id: str, depends_on: Sequence[str], over: str | None,
               context: TaskContext) -> list[Any]:
    """The list to fan out over, as the module docstring describes."""
    source, key = over.split(".", 1) if over and "." in over else ("", over or "")
    if not source:
        if len(depends_on) != 1:
            raise NonRetryableError(
                f"task {node_id!r} depends on {list(depends_on)}: pass over='task.key' to say "
                "which list to fan out over", task_id=node_id)
        source = depends_on[0]
    value = context.tasks[source].output
    if key:
        if not isinstance(value, dict) or key not in value:
            raise NonRetryableError(f"task {node_id!r}: output of {source!r} has no key {key!r}",
                                    task_id=node_id)
        value = value[key]
    elif isinstance(value, dict):
        lists = [v for v in value.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise NonRetryableError(
                f"task {node_id!r}: output of {source!r} has {len(lists)} list values; pass "
                f"over='{source}.<key>'", task_id=node_id)
        value = lists[0]
    if not isinstance(value, list):
        raise NonRetryableError(
            f"task {node_id!r}: fan-out source {source!r} is {type(value).__name__}, not a list",
            task_id=node_id)
    return value


def add_parallel_tasks(wf: Workflow, node_id: str, fn: Callable[..., Any],
                       depends_on: Iterable[str], *, over: str | None,
                       max_parallel: int | None, retries: int, retry_delay: float,
                       backoff: float, timeout: float | None) -> TaskDef:
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

    return wf.add_task(TaskDef(
        id=node_id, fn=planner, depends_on=deps,
        retry=retry_policy(wf.name, node_id, retries, retry_delay, backoff, 300.0),
        timeout=positive_or_none(wf.name, node_id, "timeout", timeout), kind="expand",
        options={"expander": FanOut(fn, max_parallel), "pattern": "parallel"},
    ))
