"""Sub-workflows: a node that runs another workflow as a child run with its own history.

The child run's id is ``<parent run>.<node id>.<attempt>``; it has its own history and shows
in ``deerflow runs list``. Its ``context.input`` is the upstream output (a dict by task id when
the node depends on several tasks, the parent's input when it depends on none), or exactly one
upstream's output with ``input_from=``. It sees the parent run's ``params``. A child run that
fails fails the node, and the node's retries start a fresh child run.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from deerflow.core import KindOptions, NodeKind, RetryOptions, RunState, TaskDef, WorkflowDef
from deerflow.core import history as h
from deerflow.core.traceparent import run_traceparent
from deerflow.errors import DefinitionError


class SubWorkflowOptions(KindOptions):
    """A sub-workflow node's options: the child workflow, and the one upstream it reads."""

    workflow: WorkflowDef
    input_from: str | None = None


class SubWorkflowKind(NodeKind):
    """A node whose attempts are child runs of another workflow, not worker tasks."""

    name = "subworkflow"
    label = "sub-workflow"
    css_class = "subworkflow"
    options_model = SubWorkflowOptions

    def nested_workflows(self, task: TaskDef) -> Sequence[WorkflowDef]:
        """The child workflow runs wherever its parent runs."""
        return (self.options(task, SubWorkflowOptions).workflow,)

    def on_scheduled(
        self, task: TaskDef, state: RunState, attempt: int, now: float
    ) -> list[h.HistoryEvent]:
        """Each attempt is a fresh child run (an event of the child's history)."""
        request = start_child_run(task, state, attempt, now)
        child = self.options(task, SubWorkflowOptions).workflow
        return [request, *child.request_events(request)]

    def runs_on_worker(self, task: TaskDef) -> bool:
        """The child run reports the node's outcome: no task message."""
        return False


SUB_WORKFLOW = SubWorkflowKind()


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
    return parent.add_task(
        TaskDef(
            id=node_id,
            fn=None,
            depends_on=deps,
            retry=retry.policy(parent.name, node_id),
            timeout=retry.attempt_timeout(parent.name, node_id),
            kind=SUB_WORKFLOW,
            options=SubWorkflowOptions(workflow=child, input_from=input_from),
        )
    )


def child_run_id(parent_run_id: str, task_id: str, attempt: int) -> str:
    """The run id of a sub-workflow's child run for one attempt of its node."""
    return f"{parent_run_id}.{task_id}.{attempt}"


def start_child_run(task: TaskDef, state: RunState, attempt: int, now: float) -> h.RunRequested:
    """The ``RunRequested`` of a sub-workflow node's child run (an outbox event)."""
    child = NodeKind.options(task, SubWorkflowOptions).workflow
    rid = child_run_id(state.run_id, task.id, attempt)
    return h.RunRequested(
        id=h.event_id(rid, "requested"),
        run_id=rid,
        ts=now,
        workflow=child.name,
        version=child.version,
        fingerprint=child.fingerprint(),
        shape=child.shape(),
        params=state.params,
        input=child_input(task, state),
        parent=h.ParentRef(run_id=state.run_id, task_id=task.id, attempt=attempt),
        correlation_id=state.correlation_id or state.run_id,
        # The child's spans belong to the parent's trace, under the parent run's span.
        traceparent=run_traceparent(state.run_id, state.trigger, state.traceparent),
    )


def child_input(task: TaskDef, state: RunState) -> Any:
    """A child run's input: the upstream output (a dict by id for several), else the run's."""
    source = NodeKind.options(task, SubWorkflowOptions).input_from
    deps = [source] if source else list(task.depends_on)
    if not deps:
        return state.input
    if len(deps) == 1:
        return state.tasks[deps[0]].output
    return {dep: state.tasks[dep].output for dep in deps}
