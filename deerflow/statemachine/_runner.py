"""Running a transition's user code: guard, exit hooks, handlers, enter hooks, in that order."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterable
from typing import Any, TypeVar

from deerflow.core import KindOptions, NodeKind, RetryPolicy, RunState, TaskDef, WorkflowDef
from deerflow.core import history as h
from deerflow.errors import DefinitionError, TransitionNotAllowed
from deerflow.runtime import TaskContext
from deerflow.statemachine._decide import decide_machine
from deerflow.statemachine._fold import MACHINE_FOLD, head_request
from deerflow.statemachine._model import MachineSpec

S = TypeVar("S", bound=type[Any])


class TransitionOptions(KindOptions):
    """A transition task's options: the transition whose code it runs."""

    transition: str


class TransitionKind(NodeKind):
    """Runs a transition's code for the instance's head request (``name@request`` tasks)."""

    name = "transition"
    label = "transition"
    options_model = TransitionOptions
    folds = (MACHINE_FOLD,)

    def inputs(
        self, wf: WorkflowDef, state: RunState, task: TaskDef
    ) -> tuple[Iterable[str], dict[str, Any]]:
        """The head request: its transition, source state, payload and id."""
        request = head_request(state)
        if request is None:
            return wf.ancestors(task.id), {}
        return (), {
            "transition": request["transition"],
            "source": state.machine_state,
            "payload": request["payload"],
            "request_id": request["request_id"],
        }


TRANSITION = TransitionKind()


async def _call(fn: Any, context: TaskContext) -> Any:
    if inspect.iscoroutinefunction(fn):
        return await fn(context)
    return await asyncio.to_thread(fn, context)  # user code may block: keep it off the loop


def transition_task(spec: MachineSpec, machine: Any, name: str) -> TaskDef:
    """The task that runs transition ``name``'s code on ``machine`` (the class instance)."""
    transition = spec.transitions[name]

    async def run(context: TaskContext) -> dict[str, Any]:
        guard = transition.guard
        if guard is not None:
            check = getattr(machine, guard) if isinstance(guard, str) else guard.__get__(machine)
            if not await _call(check, context):
                raise TransitionNotAllowed(f"guard of transition {name!r} refused it")
        source = context.extra.get("source")
        for method in spec.exit.get(source or "", []):
            await _call(getattr(machine, method), context)
        for method in spec.handlers.get(name, []):
            await _call(getattr(machine, method), context)
        for method in spec.enter.get(transition.target.name, []):
            await _call(getattr(machine, method), context)
        return {"transition": name, "target": transition.target.name}

    cls = type(machine)
    return TaskDef(
        id=name,
        fn=run,
        kind=TRANSITION,
        retry=RetryPolicy(retries=cls.retries, retry_delay=cls.retry_delay),
        timeout=cls.timeout,
        options=TransitionOptions(transition=name),
    )


class StateMachineMixin(WorkflowDef):
    """Adds ``Workflow.state_machine``; fills the core's hooks for ``transition@request`` tasks
    and for routing trigger events to instances."""

    #: the machine's declaration, once ``@state_machine`` made this workflow one
    machine: MachineSpec | None = None
    _machine_instance: Any = None

    def state_machine(self, cls: S) -> S:
        """Make this workflow a durable state machine defined by a ``StateMachine`` subclass."""
        spec = getattr(cls, "__deerflow_machine__", None)
        if spec is None:
            raise DefinitionError(
                f"workflow {self.name!r}: @state_machine expects a StateMachine subclass"
            )
        if self._tasks or self.machine is not None:
            raise DefinitionError(
                f"workflow {self.name!r}: a state machine workflow has no "
                "other tasks and one machine"
            )
        self.machine = spec
        self._machine_instance = cls()
        self._machine_tasks: dict[str, TaskDef] = {}
        self._fingerprint = None
        return cls

    def resolve_task(self, task_id: str) -> TaskDef | None:
        """The task running a transition's code: ``name@request`` runs transition ``name``."""
        if self.machine is None or "@" not in task_id:
            return super().resolve_task(task_id)
        name = task_id.partition("@")[0]
        cached = self._machine_tasks.get(name)
        if cached is None:
            cached = self._machine_tasks[name] = transition_task(
                self.machine, self._machine_instance, name
            )
        return cached

    def decide_run(self, state: RunState, now: float) -> list[h.HistoryEvent] | None:
        """A state machine instance moves by its requested transitions, not by tasks."""
        if self.machine is None:
            return None  # as WorkflowDef's (asked at every decision: no call up the chain)
        return decide_machine(self, self.machine, state, now)

    def has_body(self) -> bool:
        """A state machine workflow is valid without tasks."""
        return self.machine is not None or super().has_body()

    def fingerprint_extra(self) -> str:
        """The machine's states and transitions are part of the workflow's shape."""
        if self.machine is None:
            return super().fingerprint_extra()
        return "machine:" + self.machine.fingerprint()

    def takes_requests(self) -> bool:
        """An instance takes transition requests."""
        return self.machine is not None or super().takes_requests()

    def request_refusal(self, request: str, state: str | None) -> str | None:
        """Why transition ``request`` is not allowed in ``state`` (unknown, or not from it)."""
        if self.machine is None:
            return super().request_refusal(request, state)
        return self.machine.refusal(request, state)

    def route_trigger(self, event: Any) -> tuple[str, str] | None:
        """For a state machine: the ``(instance, transition)`` a trigger event asks for."""
        if self.machine is None:
            return super().route_trigger(event)
        routed: tuple[str, str] | None = self._machine_instance.route(event)
        return routed
