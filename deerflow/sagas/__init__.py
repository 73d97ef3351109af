"""Sagas: steps that run in order, and compensations that undo them if a later step fails.

Two ways to write one. The spec's form: a step and its compensation share ``order``, and
``compensate=`` on the compensating method names it::

    @workflow.saga
    class OrderSaga(Saga):
        @step(order=1)
        def reserve_inventory(self, context): ...

        @step(order=1, compensate="release_inventory")
        def release_inventory(self, context, reservation): ...

The explicit form hangs the compensation on its step, with its own retry policy::

    class OrderSaga(Saga):
        @step(order=1)
        def reserve_inventory(self, context): ...

        @reserve_inventory.compensation(retries=5)
        def release_inventory(self, context, reservation): ...

Semantics: steps run by ascending ``order``; steps sharing an ``order`` run in parallel. When a
step fails after its retries, the compensations of the steps that completed run in reverse
order (each receives its step's output), each with its own retries; the run ends
``compensated``, or ``compensation_failed`` if a compensation kept failing. Inside a class body
``step`` needs no import (the class namespace provides it).
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from deerflow.core import RetryOptions, RunState, TaskDef, WorkflowDef
from deerflow.core import history as h
from deerflow.errors import DefinitionError
from deerflow.sagas._compensation import (
    SAGA_STEP,
    CompensatingAction,
    SagaStepOptions,
    compensation_task,
)
from deerflow.sagas._fold import COMPENSATION_PLUGIN
from deerflow.sagas._rollback import roll_back

__all__ = [
    "COMPENSATION_PLUGIN",
    "CompensatingAction",
    "Saga",
    "SagaMixin",
    "SagaStep",
    "add_saga",
    "step",
]

S = TypeVar("S", bound=type[Any])


@dataclass
class SagaStep:
    """A method marked by :func:`step`: a forward step, or (``compensate=``) a compensation."""

    fn: Callable[..., Any]
    order: int
    compensate: str | None = None
    retries: int = 0
    retry_delay: float = 1.0
    backoff: float = 2.0
    timeout: float | None = None
    compensations: list[CompensatingAction] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The method's name: the step's task id."""
        return str(self.fn.__name__)

    @property
    def options(self) -> RetryOptions:
        """The step's retry options."""
        return RetryOptions(self.retries, self.retry_delay, self.backoff, timeout=self.timeout)

    def compensation(
        self,
        fn: Callable[..., Any] | None = None,
        *,
        retries: int = 3,
        retry_delay: float = 1.0,
        backoff: float = 2.0,
        timeout: float | None = None,
    ) -> Any:
        """Decorate the method that undoes this step (explicit form)."""

        def mark(method: Callable[..., Any]) -> SagaStep:
            self.compensations.append(
                CompensatingAction(
                    method,
                    id=method.__name__,
                    retries=retries,
                    retry_delay=retry_delay,
                    backoff=backoff,
                    timeout=timeout,
                )
            )
            return self

        return mark(fn) if fn is not None else mark


def step(
    order: int,
    *,
    compensate: str | None = None,
    retries: int = 0,
    retry_delay: float = 1.0,
    backoff: float = 2.0,
    timeout: float | None = None,
) -> Callable[[Callable[..., Any]], SagaStep]:
    """Mark a saga method as the step of ``order`` (or, with ``compensate=``, its compensation)."""

    def mark(fn: Callable[..., Any]) -> SagaStep:
        return SagaStep(fn, order, compensate, retries, retry_delay, backoff, timeout)

    return mark


class _SagaMeta(type):
    """Provides ``step`` inside saga class bodies, as the spec writes them without an import."""

    @classmethod
    def __prepare__(
        cls, name: str, bases: tuple[type, ...], /, **kwargs: Any
    ) -> MutableMapping[str, object]:
        return {"step": step}

    def __new__(
        cls, name: str, bases: tuple[type, ...], namespace: dict[str, Any], **kwargs: Any
    ) -> _SagaMeta:
        if namespace.get("step") is step:
            del namespace["step"]
        return super().__new__(cls, name, bases, namespace, **kwargs)


class Saga(metaclass=_SagaMeta):
    """Base class of sagas; decorate a subclass with ``@workflow.saga``. See the module doc."""


def _collect(cls: type) -> tuple[list[SagaStep], dict[int, list[SagaStep]]]:
    steps: list[SagaStep] = []
    comps: dict[int, list[SagaStep]] = {}
    seen: set[int] = set()
    for klass in reversed(cls.__mro__):
        for value in vars(klass).values():
            # The explicit form binds a step under its compensation's name too: count it once.
            if isinstance(value, SagaStep) and id(value) not in seen:
                seen.add(id(value))
                if value.compensate is None:
                    steps.append(value)
                else:
                    comps.setdefault(value.order, []).append(value)
    return steps, comps


def _compensation_for(
    wf: WorkflowDef,
    cls: type,
    instance: Any,
    fwd: SagaStep,
    group: list[SagaStep],
    comps: dict[int, list[SagaStep]],
) -> CompensatingAction | None:
    actions = list(fwd.compensations)
    for comp in comps.get(fwd.order, []):
        if len(group) > 1:
            raise DefinitionError(
                f"workflow {wf.name!r}, saga {cls.__name__}: order {fwd.order} has several "
                f"steps, so compensation {comp.name!r} is ambiguous; use "
                f"@{fwd.name}.compensation"
            )
        method = getattr(instance, comp.compensate or comp.name, None)
        target = comp.compensate or comp.name
        if method is None:
            raise DefinitionError(
                f"workflow {wf.name!r}, saga {cls.__name__}: compensate={target!r} names no method"
            )
        fn = method.fn if isinstance(method, SagaStep) else method
        bound = fn.__get__(instance) if not hasattr(fn, "__self__") else fn
        actions.append(
            CompensatingAction(
                bound,
                id=target,
                retries=max(comp.retries, 3),
                retry_delay=comp.retry_delay,
                backoff=comp.backoff,
                timeout=comp.timeout,
            )
        )
    if len(actions) > 1:
        raise DefinitionError(
            f"workflow {wf.name!r}, saga step {fwd.name!r}: more than one compensation"
        )
    if actions and not hasattr(actions[0].fn, "__self__"):
        first = actions[0]
        actions[0] = CompensatingAction(
            first.fn.__get__(instance),
            id=first.id,
            retries=first.retries,
            retry_delay=first.retry_delay,
            backoff=first.backoff,
            timeout=first.timeout,
        )
    return actions[0] if actions else None


def add_saga(wf: WorkflowDef, cls: type) -> None:
    """Add the steps of saga class ``cls`` (and their compensations) to ``wf``."""
    if not isinstance(cls, type) or not issubclass(cls, Saga):
        raise DefinitionError(f"workflow {wf.name!r}: @saga expects a Saga subclass")
    steps, comps = _collect(cls)
    if not steps:
        raise DefinitionError(f"workflow {wf.name!r}, saga {cls.__name__}: no @step methods")
    instance = cls()
    previous: tuple[str, ...] = ()
    for order in sorted({s.order for s in steps}):
        group = [s for s in steps if s.order == order]
        for fwd in group:
            action = _compensation_for(wf, cls, instance, fwd, group, comps)
            wf.add_task(
                TaskDef(
                    id=fwd.name,
                    fn=fwd.fn.__get__(instance),
                    depends_on=previous,
                    retry=fwd.options.policy(wf.name, fwd.name),
                    timeout=fwd.options.attempt_timeout(wf.name, fwd.name),
                    compensation=compensation_task(wf.name, fwd.name, action),
                    kind=SAGA_STEP,
                    options=SagaStepOptions(saga=cls.__name__, order=order),
                )
            )
        previous = tuple(s.name for s in group)


class SagaMixin(WorkflowDef):
    """Adds ``Workflow.saga`` and the compensations of ``Workflow.task(compensate=...)``."""

    def compensation_node(self, step_id: str, compensate: Any) -> TaskDef:
        """The node running ``compensate`` (a function ``(context, output)`` or a
        :class:`CompensatingAction`) to undo ``step_id``."""
        node = compensation_task(self.name, step_id, compensate)
        assert node is not None
        return node

    def decide_failure(
        self, state: RunState, now: float, failed_task: str, error: str
    ) -> list[h.HistoryEvent] | None:
        """With compensations, a failure rolls the run back instead of just failing it."""
        if not self.compensations:
            return super().decide_failure(state, now, failed_task, error)
        return roll_back(self, state, now, failed_task, error)

    def saga(self, cls: S) -> S:
        """Add the steps of a :class:`deerflow.Saga` subclass, with their compensations."""
        add_saga(self, cls)
        return cls
