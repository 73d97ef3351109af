"""Sub-workflows: a node that runs another workflow as a child run with its own history.

The child run's id is ``<parent run>.<node id>.<attempt>``; it has its own history and shows
in ``deerflow runs list``. Its ``context.input`` is the upstream output (a dict by task id when
the node depends on several tasks, the parent's input when it depends on none), or exactly one
upstream's output with ``input_from=``. It sees the parent run's ``params``. A child run that
fails fails the node, and the node's retries start a fresh child run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from deerflow.core._definition import WorkflowDef
from deerflow.core._retry import RetryOptions
from deerflow.core._taskdef import TaskDef
from deerflow.errors import DefinitionError


@dataclass(frozen=True)
class SubWorkflow:
    """A declarative sub-workflow node: ``wf.add(SubWorkflow(id=..., workflow=...))``.

    The same node as ``@wf.sub_workflow(...)``, as a value: build it in a loop, keep it in a
    list, add it to several workflows.

    Example::

        validate = SubWorkflow(id="validate", workflow=validation, depends_on=["extract"])
        main.add(validate)

    Args:
        id: the node's task id in the parent.
        workflow: the workflow the child run runs.
        depends_on: parent tasks that must complete first.
        input_from: the one upstream task whose output is the child's input (must be in
            ``depends_on``; default: all of ``depends_on``).
        retries, retry_delay, backoff: a failed child run is retried as a new child run.
        timeout: unused for child runs today (accepted for symmetry with tasks).
    """

    id: str
    workflow: WorkflowDef
    depends_on: Iterable[str] = field(default=())
    input_from: str | None = None
    retries: int = 0
    retry_delay: float = 1.0
    backoff: float = 2.0
    timeout: float | None = None

    def add_to(self, parent: WorkflowDef) -> TaskDef:
        """Add this node to ``parent``; a failed child run fails the node (retries apply)."""
        return add_sub_workflow(
            parent,
            self.id,
            self.workflow,
            self.depends_on,
            input_from=self.input_from,
            retry=RetryOptions(self.retries, self.retry_delay, self.backoff, timeout=self.timeout),
        )


def add_sub_workflow(
    parent: WorkflowDef,
    node_id: str,
    child: WorkflowDef,
    depends_on: Iterable[str],
    *,
    input_from: str | None = None,
    retry: RetryOptions | None = None,
) -> TaskDef:
    """Add a node running ``child``; a failed child run fails the node (retries apply)."""

    retry = retry or RetryOptions()
    where = f"workflow {parent.name!r}, task {node_id!r}"
    if not isinstance(child, WorkflowDef):
        raise DefinitionError(f"{where}: workflow= must be a Workflow, got {type(child).__name__}")
    if child is parent:
        raise DefinitionError(f"{where}: a workflow cannot run itself as a sub-workflow")
    if isinstance(depends_on, str):
        raise DefinitionError(f"{where}: depends_on must be a list of task ids")
    deps = tuple(depends_on)
    if input_from is not None and input_from not in deps:
        raise DefinitionError(
            f"{where}: input_from={input_from!r} must be one of depends_on {list(deps)}"
        )
    child.validate()
    options: dict[str, object] = {"workflow": child}
    if input_from is not None:
        options["input_from"] = input_from
    return parent.add_task(
        TaskDef(
            id=node_id,
            fn=None,
            depends_on=deps,
            retry=retry.policy(parent.name, node_id),
            timeout=retry.attempt_timeout(parent.name, node_id),
            kind="subworkflow",
            options=options,
        )
    )
