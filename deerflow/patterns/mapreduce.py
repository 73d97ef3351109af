"""MapReduce: partition -> map tasks spread over every worker -> a tree of reduces.

::

    @workflow.map_reduce(id="analyze_logs", partitions=100, reduce_parallelism=10)
    class LogAnalysis(MapReduce):
        def partition(self, context): ...          # -> list of JSON partitions
        def map(self, partition, context): ...     # -> JSON result of one partition
        def reduce(self, results, context): ...    # -> the node's output

How it runs:

1. ``partition(context)`` runs once, as the node's first task; its list is recorded in the
   history with the plan, so a restart never partitions again.
2. The list is grouped into at most ``partitions`` map tasks (contiguous groups of near-equal
   size; without ``partitions=``, one map task per partition). A map task calls ``map`` for
   each partition of its group. Map tasks are ordinary task messages keyed by run and task,
   so they spread over every partition of the task queue and so over every worker process.
   A map task that fails is retried alone (the node's ``retries``); the others keep their
   recorded results.
3. With ``reduce_parallelism=N`` > 1, N partial reduces each take a contiguous slice of the map
   tasks' results and pass them on, shrunk by :meth:`MapReduce.combine` if the class defines
   it; then one final task calls ``reduce(results, context)``. Its output is the node's.

``reduce`` always receives map results (values shaped like ``map``'s output), in partition
order, whether or not partial reduces combined them. ``combine(results, context)`` must return
one value shaped like a map result that stands for all of ``results`` (for counts: their sum);
a class without ``combine`` gets partial reduces that forward their slice unchanged, which is
always correct. Every result travels through the history, so keep them small (counts, keys,
references to blobs), not the data itself.

Map and reduce see ``context.params`` and ``context.input`` but not upstream outputs: pass
what a map needs through ``partition()``. One instance of the class serves every task of a
process, concurrently: keep no per-task state on ``self``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from deerflow.core import RetryOptions, TaskDef, WorkflowDef
from deerflow.core.expand import child_task_id
from deerflow.errors import DefinitionError, NonRetryableError
from deerflow.patterns._expanding import MAP_REDUCE
from deerflow.patterns._mrplan import plan_map_reduce
from deerflow.runtime import TaskContext


class MapReduce:
    """Base class of a map-reduce node; subclass it and add it with ``@workflow.map_reduce``.

    Methods may be sync (run in a worker thread) or async. See
    :mod:`deerflow.patterns.mapreduce` for how the tasks are laid out and retried.
    """

    def partition(self, context: TaskContext) -> list[Any]:
        """The partitions of the input (JSON values, e.g. ``{"file": ...}``)."""
        raise NotImplementedError(f"{type(self).__name__} must define partition()")

    def map(self, partition: Any, context: TaskContext) -> Any:
        """The result of one partition."""
        raise NotImplementedError(f"{type(self).__name__} must define map()")

    def reduce(self, results: list[Any], context: TaskContext) -> Any:
        """The node's output from every map result, in partition order."""
        raise NotImplementedError(f"{type(self).__name__} must define reduce()")

    def combine(self, results: list[Any], context: TaskContext) -> Any:
        """Optional: one map-shaped result standing for ``results`` (a partial reduce)."""
        raise NotImplementedError


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


@dataclass
class MapReduceExpander:
    """The expander of a map-reduce node (see the module docstring)."""

    node_id: str
    job: MapReduce
    partitions: int | None
    reduce_parallelism: int
    max_parallel: int | None = None
    child_sees_upstream: bool = False

    def plan(self, returned: Any, node_id: str) -> list[dict[str, Any]]:
        """Map, partial-reduce and final-reduce specs for the partitions."""
        if not isinstance(returned, list):
            raise NonRetryableError(
                f"map-reduce {node_id!r}: partition() must return a list, "
                f"got {type(returned).__name__}",
                task_id=node_id,
            )
        return plan_map_reduce(returned, self.partitions, self.reduce_parallelism)

    def child_callable(self, spec: dict[str, Any]) -> Callable[[TaskContext], Any]:
        """The body of one map, partial-reduce or final-reduce task."""
        role = spec["role"]
        if role == "map":
            return self._map_body(spec["items"])
        deps = [child_task_id(self.node_id, d) for d in spec.get("depends_on", [])]
        return self._combine_body(deps) if role == "combine" else self._reduce_body(deps)

    def collect(self, specs: Sequence[dict[str, Any]], outputs: Sequence[Any]) -> Any:
        """The final reduce's output (the last spec)."""
        return outputs[-1]

    def _map_body(self, items: list[Any]) -> Callable[[TaskContext], Any]:
        job = self.job

        async def run_map(context: TaskContext) -> list[Any]:
            return [await _maybe_await(job.map(item, context)) for item in items]

        def run_map_sync(context: TaskContext) -> list[Any]:
            return [job.map(item, context) for item in items]

        return run_map if inspect.iscoroutinefunction(job.map) else run_map_sync

    def _combine_body(self, deps: list[str]) -> Callable[[TaskContext], Any]:
        job = self.job
        combines = type(job).combine is not MapReduce.combine

        async def run_combine(context: TaskContext) -> list[Any]:
            results = _flatten(context, deps)
            if not combines or not results:
                return results
            return [await _maybe_await(job.combine(results, context))]

        return run_combine

    def _reduce_body(self, deps: list[str]) -> Callable[[TaskContext], Any]:
        job = self.job
        if inspect.iscoroutinefunction(job.reduce):

            async def run_reduce(context: TaskContext) -> Any:
                return await job.reduce(_flatten(context, deps), context)

            return run_reduce

        def run_reduce_sync(context: TaskContext) -> Any:
            return job.reduce(_flatten(context, deps), context)

        return run_reduce_sync


def _flatten(context: TaskContext, deps: list[str]) -> list[Any]:
    """The results carried by the outputs of ``deps`` (lists of results), in order."""
    inputs = context.extra["inputs"]
    return [result for dep in deps for result in inputs[dep]]


def add_map_reduce(
    wf: WorkflowDef,
    node_id: str,
    cls: type[MapReduce],
    depends_on: Iterable[str],
    *,
    partitions: int | None,
    reduce_parallelism: int,
    max_parallel: int | None,
    retry: RetryOptions,
) -> TaskDef:
    """Add a map-reduce node for class ``cls`` (instantiated once, without arguments)."""
    where = f"workflow {wf.name!r}, task {node_id!r}"
    if not (isinstance(cls, type) and issubclass(cls, MapReduce)):
        raise DefinitionError(
            f"{where}: @map_reduce decorates a subclass of MapReduce, got {cls!r}"
        )
    missing = [
        m for m in ("partition", "map", "reduce") if getattr(cls, m) is getattr(MapReduce, m)
    ]
    if missing:
        raise DefinitionError(f"{where}: {cls.__name__} must define {', '.join(missing)}")
    if partitions is not None and partitions < 1:
        raise DefinitionError(f"{where}: partitions must be >= 1")
    if reduce_parallelism < 1:
        raise DefinitionError(f"{where}: reduce_parallelism must be >= 1")
    if max_parallel is not None and max_parallel < 1:
        raise DefinitionError(f"{where}: max_parallel must be >= 1")
    if isinstance(depends_on, str):
        raise DefinitionError(f"{where}: depends_on must be a list of task ids")
    job = cls()
    expander = MapReduceExpander(node_id, job, partitions, reduce_parallelism, max_parallel)
    return wf.add_task(
        TaskDef(
            id=node_id,
            fn=job.partition,
            depends_on=tuple(depends_on),
            retry=retry.policy(wf.name, node_id),
            timeout=retry.attempt_timeout(wf.name, node_id),
            kind=MAP_REDUCE,
            options={"expander": expander, "pattern": "map_reduce"},
        )
    )
