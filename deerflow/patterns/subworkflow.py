"""Sub-workflows: a node that runs another workflow as a child run with its own history."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from deerflow.engine._taskdef import TaskDef, positive_or_none, retry_policy
from deerflow.errors import DefinitionError

if TYPE_CHECKING:
    from deerflow.engine._definition import Workflow


def add_sub_workflow(parent: Workflow, node_id: str, child: Workflow, depends_on: Iterable[str],
                     *, retries: int, retry_delay: float, backoff: float,
                     timeout: float | None) -> TaskDef:
    """Add a node running ``child``; a failed child run fails the node (retries apply)."""
    from deerflow.engine._definition import Workflow

    where = f"workflow {parent.name!r}, task {node_id!r}"
    if not isinstance(child, Workflow):
        raise DefinitionError(f"{where}: workflow= must be a Workflow, got {type(child).__name__}")
    if child is parent:
        raise DefinitionError(f"{where}: a workflow cannot run itself as a sub-workflow")
    child.validate()
    return parent.add_task(TaskDef(
        id=node_id, fn=None, depends_on=tuple(depends_on),
        retry=retry_policy(parent.name, node_id, retries, retry_delay, backoff, 300.0),
        timeout=positive_or_none(parent.name, node_id, "timeout", timeout), kind="subworkflow",
        options={"workflow": child},
    ))
