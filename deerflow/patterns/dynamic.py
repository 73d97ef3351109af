"""Dynamic tasks: a generator returns task specs at run time; the engine runs them durably.

::

    @workflow.dynamic_tasks(id="process_sources", depends_on=["discover_sources"])
    def generate(context):
        return [{"id": f"process_{s['name']}", "type": "python",
                 "config": {"script": "process_source.py", "args": [s["uri"]]}}
                for s in context.tasks["discover_sources"].output["sources"]]

The generator is the node's first attempt. Its specs are checked (ids unique and valid, types
registered in :class:`~deerflow.patterns.tasktypes.DynamicTasks`, configs valid, ``depends_on``
naming earlier specs) and recorded in the history in the same event that completes the
generator, so after a crash or a restart the same specs run and the generator is not called
again. Each spec becomes the child task ``node/<spec id>``; generated tasks see the node's
upstream outputs in ``context.tasks``. Downstream, ``context.dynamic_outputs[node]`` maps each
spec id to its output, in spec order. A generated task that fails after the node's retries
fails the node; a bad spec fails it at once (retrying would generate the same specs).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deerflow.core import RetryOptions, TaskDef, WorkflowDef
from deerflow.errors import DefinitionError, NonRetryableError
from deerflow.patterns._expanding import DYNAMIC_TASKS
from deerflow.patterns.tasktypes import DynamicTasks, TaskSpec
from deerflow.runtime import TaskContext

SPEC_KEYS = frozenset({"id", "type", "config", "depends_on"})


@dataclass
class DynamicExpander:
    """The expander of a ``dynamic_tasks`` node (see the module docstring)."""

    search_path: tuple[Path, ...]
    max_parallel: int | None = None
    child_sees_upstream: bool = True

    def plan(self, returned: Any, node_id: str) -> list[dict[str, Any]]:
        """Check the generated specs; they are recorded as they are."""
        if not isinstance(returned, list):
            raise NonRetryableError(
                f"dynamic tasks {node_id!r} must return a list of task "
                f"specs, got {type(returned).__name__}",
                task_id=node_id,
            )
        for position, spec in enumerate(returned):
            check_spec(node_id, position, spec)
        return returned

    def child_callable(self, spec: dict[str, Any]) -> Callable[[TaskContext], Any]:
        """Run the spec's task type."""
        task = TaskSpec(
            id=spec["id"],
            type=spec["type"],
            config=spec.get("config", {}),
            search_path=self.search_path,
        )

        async def run(context: TaskContext) -> Any:
            # Looked up here, inside the attempt: a worker that lacks the type fails the task
            # (non-retryable, naming the type) instead of failing to resolve it at all.
            handler = DynamicTasks.get(task.type).handler
            if inspect.iscoroutinefunction(handler):
                return await handler(task, context)
            return await asyncio.to_thread(handler, task, context)

        return run

    def collect(self, specs: Sequence[dict[str, Any]], outputs: Sequence[Any]) -> Any:
        """Generated task id -> output, in spec order."""
        return {spec["id"]: out for spec, out in zip(specs, outputs, strict=True)}


def check_spec(node_id: str, position: int, spec: Any) -> None:
    """Raise :class:`NonRetryableError` naming the spec and what is wrong with it."""
    name = spec.get("id") if isinstance(spec, dict) else None
    where = f"dynamic tasks {node_id!r}, spec #{position}" + (f" ({name!r})" if name else "")
    if not isinstance(spec, dict):
        raise NonRetryableError(
            f"{where}: a task spec is an object, got {type(spec).__name__}", task_id=node_id
        )
    unknown = sorted(set(spec) - SPEC_KEYS)
    if unknown:
        raise NonRetryableError(
            f"{where}: unknown keys {unknown} (a spec has {', '.join(sorted(SPEC_KEYS))})",
            task_id=node_id,
        )
    if not isinstance(spec.get("type"), str):
        raise NonRetryableError(
            f"{where}: 'type' is required (one of {', '.join(DynamicTasks.types())})",
            task_id=node_id,
        )
    config = spec.get("config", {})
    if not isinstance(config, dict):
        raise NonRetryableError(f"{where}: 'config' must be an object", task_id=node_id)
    try:
        task_type = DynamicTasks.get(spec["type"])
        if task_type.validate is not None:
            task_type.validate(config)
    except (ValueError, NonRetryableError) as exc:
        raise NonRetryableError(f"{where}: {exc}", task_id=node_id) from None


def workflow_dir(fn: Callable[..., Any]) -> Path | None:
    """The directory of the file that defines ``fn`` (the workflow's file), if known."""
    try:
        source = inspect.getsourcefile(fn)
    except TypeError:
        return None
    return Path(source).resolve().parent if source else None


def add_dynamic_tasks(
    wf: WorkflowDef,
    node_id: str,
    fn: Callable[..., Any],
    depends_on: Iterable[str],
    *,
    max_parallel: int | None,
    retry: RetryOptions,
) -> TaskDef:
    """Add a dynamic-tasks node whose generator is ``fn(context)``."""
    where = f"workflow {wf.name!r}, task {node_id!r}"
    if isinstance(depends_on, str):
        raise DefinitionError(f"{where}: depends_on must be a list of task ids")
    if max_parallel is not None and max_parallel < 1:
        raise DefinitionError(f"{where}: max_parallel must be >= 1")
    home = workflow_dir(fn)
    # The working directory is resolved when a task runs (a worker may start elsewhere).
    search = (home, Path(".")) if home is not None else (Path("."),)
    return wf.add_task(
        TaskDef(
            id=node_id,
            fn=fn,
            depends_on=tuple(depends_on),
            retry=retry.policy(wf.name, node_id),
            timeout=retry.attempt_timeout(wf.name, node_id),
            kind=DYNAMIC_TASKS,
            options={"expander": DynamicExpander(search, max_parallel), "pattern": "dynamic"},
        )
    )
