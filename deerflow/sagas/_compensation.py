"""The node kinds of sagas: a step's compensation, and a saga step.

A compensation is a node that runs only when its run rolls back (see
:mod:`deerflow.sagas._rollback`); an attempt sees the step it undoes and that step's upstream,
and its body receives ``(context, step_output)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from deerflow.core import KindOptions, NodeKind, RunState, TaskDef, WorkflowDef
from deerflow.core.child import child_body
from deerflow.core.taskdef import positive_or_none, retry_policy
from deerflow.errors import DefinitionError
from deerflow.sagas._fold import COMPENSATION_FOLD


class CompensationOptions(KindOptions):
    """A compensation's options: the step it undoes."""

    compensates: str


class CompensationKind(NodeKind):
    """Undoes a completed step when its run rolls back; it never runs otherwise."""

    name = "compensation"
    label = "compensation"
    options_model = CompensationOptions
    folds = (COMPENSATION_FOLD,)

    def inputs(
        self, wf: WorkflowDef, state: RunState, task: TaskDef
    ) -> tuple[Iterable[str], dict[str, Any]]:
        """The step it undoes and that step's upstream."""
        step = self.options(task, CompensationOptions).compensates
        return {step, *wf.ancestors(step)}, {}


class SagaStepOptions(KindOptions):
    """Where a step sits in its saga (shown, not decided on: the dependencies order it)."""

    saga: str
    order: int


class SagaStepKind(NodeKind):
    """A saga's forward step: a plain task, recorded as one in the fingerprint."""

    label = "saga step"
    options_model = SagaStepOptions
    folds = (COMPENSATION_FOLD,)


COMPENSATION = CompensationKind()
SAGA_STEP = SagaStepKind()


@dataclass(frozen=True)
class CompensatingAction:
    """How to undo a step: a function ``(context, output)`` and its own retry policy.

    Pass it as ``compensate=`` to :meth:`Workflow.task`, or let :class:`deerflow.Saga`
    build it from a saga's compensation methods. A compensation receives the output of the
    step it undoes; its ``context.idempotency_key`` is stable across retries and crashes, so
    keying the undo on it makes the undo happen once.

    Args:
        fn: the compensating function (sync or async).
        id: its task id in the run's history (default: the function's name).
        retries, retry_delay, backoff: its retry policy (default: 3 retries, 1 s, x2).
    """

    fn: Callable[..., Any]
    id: str | None = None
    retries: int = 3
    retry_delay: float = 1.0
    backoff: float = 2.0
    timeout: float | None = None


def compensation_task(
    workflow: str, step_id: str, compensate: Callable[..., Any] | CompensatingAction | None
) -> TaskDef | None:
    """The compensation node of ``step_id``: it runs ``fn(context, step_output)``."""
    if compensate is None:
        return None
    action = (
        compensate if isinstance(compensate, CompensatingAction) else CompensatingAction(compensate)
    )
    if not callable(action.fn):
        raise DefinitionError(
            f"workflow {workflow!r}, task {step_id!r}: compensate is not callable"
        )
    comp_id = action.id or f"{getattr(action.fn, '__name__', 'compensate')}"
    if comp_id == "<lambda>":
        comp_id = f"compensate_{step_id}"
    body = child_body(action.fn, lambda ctx: (ctx, ctx.tasks[step_id].output))
    return TaskDef(
        id=comp_id,
        fn=body,
        kind=COMPENSATION,
        retry=retry_policy(
            workflow, comp_id, action.retries, action.retry_delay, action.backoff, 300.0
        ),
        timeout=positive_or_none(workflow, comp_id, "timeout", action.timeout),
        options=CompensationOptions(compensates=step_id),
    )
