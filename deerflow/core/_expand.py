"""Nodes that expand into child tasks at run time (dynamic tasks, fan-out, map-reduce).

An expanding node runs in two phases. First its *planner* runs as an ordinary task attempt and
returns child specs (``{"id": ..., "depends_on": [sibling ids], ...}``); the worker records
them in the node's ``TaskCompleted(expansion=[...])``, so the plan is durable and a restart
never re-plans. Then the decider schedules the children (respecting sibling dependencies and
``max_parallel``), and when all of them completed it records ``TaskCollected`` with the node's
output, computed by the pure ``collect``. A child that fails for good fails the node.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from deerflow.errors import NonRetryableError

SEPARATOR = "/"
_CHILD_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-\[\]=:@]*$")


class Expander(Protocol):
    """What a pattern supplies for an expanding node (``TaskDef.options["expander"]``)."""

    #: children scheduled at once (``None``: no limit)
    max_parallel: int | None
    #: whether children see the node's upstream outputs in ``context.tasks``
    child_sees_upstream: bool

    def plan(self, returned: Any, node_id: str) -> list[dict[str, Any]]:
        """Turn what the planner returned into child specs (worker side, after the planner)."""
        ...

    def child_callable(self, spec: dict[str, Any]) -> Callable[..., Any]:
        """The body that runs one child; it receives the child's ``TaskContext``."""
        ...

    def collect(self, specs: Sequence[dict[str, Any]], outputs: Sequence[Any]) -> Any:
        """The node's output from its children's outputs, in spec order (pure)."""
        ...


def child_task_id(node_id: str, child_id: str) -> str:
    """The run-wide id of a child: ``node/child``."""
    return f"{node_id}{SEPARATOR}{child_id}"


def node_of(task_id: str) -> str | None:
    """The expanding node a child task id belongs to, or ``None`` for a top-level task."""
    node, sep, _ = task_id.partition(SEPARATOR)
    return node if sep else None


def validate_specs(node_id: str, specs: Any) -> list[dict[str, Any]]:
    """Check child specs; raise :class:`NonRetryableError` naming the node and the problem."""
    if not isinstance(specs, list):
        raise NonRetryableError(
            f"task {node_id!r} must return a list of task specs, got {type(specs).__name__}",
            task_id=node_id,
        )
    seen: set[str] = set()
    checked: list[dict[str, Any]] = []
    for position, spec in enumerate(specs):
        if not isinstance(spec, dict) or not isinstance(spec.get("id"), str):
            raise NonRetryableError(
                f"task {node_id!r}: spec #{position} needs a string 'id'", task_id=node_id
            )
        cid = spec["id"]
        if not _CHILD_ID.match(cid) or cid in seen:
            problem = "duplicate" if cid in seen else "invalid"
            raise NonRetryableError(
                f"task {node_id!r}: {problem} child id {cid!r}", task_id=node_id
            )
        deps = spec.get("depends_on", [])
        unknown = [d for d in deps if d not in seen]
        if unknown:
            raise NonRetryableError(
                f"task {node_id!r}: child {cid!r} depends on {unknown}, which are not earlier "
                "children",
                task_id=node_id,
            )
        seen.add(cid)
        checked.append(spec)
    return checked
