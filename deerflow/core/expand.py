"""Child tasks of a node: their ids (``node/child``) and the specs a node records for them.

A node whose kind has children (dynamic tasks, fan-out, map-reduce: see
:mod:`deerflow.patterns._expanding`) records its children's specs
(``{"id": ..., "depends_on": [sibling ids], ...}``) in its ``TaskCompleted(expansion=[...])``;
the fold tracks them (``Expansion`` in ``_state``), the node's kind decides on them.
"""

from __future__ import annotations

import re
from typing import Any

from deerflow.errors import NonRetryableError

SEPARATOR = "/"
_CHILD_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-\[\]=:@]*$")


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
