"""Durable state-machine workflows.

::

    workflow = Workflow(name="order_state_machine")

    @workflow.state_machine
    class OrderStateMachine(StateMachine):
        pending = State(initial=True)
        confirmed = State()
        cancelled = State(final=True)

        confirm = Transition(source=pending, target=confirmed)
        cancel = Transition(source=[pending, confirmed], target=cancelled)

        @on_transition(confirm)
        def on_confirm(self, context):
            send_confirmation_email(context.order)

Each instance is a run: ``handle = await engine.start(workflow, input={"order": {...}})``.
Its history is its transitions: ``await engine.send(handle.run_id, "confirm")`` appends a
request; the instance's owner applies requests one at a time, in order, running the handler
(guard, exit hooks, ``on_transition`` handlers, enter hooks) as a task with retries. A refused
or invalid transition raises :class:`deerflow.errors.TransitionNotAllowed` and changes
nothing; a handler that fails for good leaves the instance in its source state with the error
recorded. Reaching a final state completes the run. In a handler, ``context.order`` reads key
``order`` of the instance's input, and ``context.payload`` the payload sent with the request.
Inside the class body ``on_transition``, ``on_enter`` and ``on_exit`` need no import.
Triggers added to the workflow start instances, or, when the machine's :meth:`StateMachine.route`
maps their event to an instance, request transitions on it.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from deerflow.statemachine._fold import MACHINE_FOLD, MACHINE_PLUGIN
from deerflow.statemachine._model import (
    MachineSpec,
    State,
    Transition,
    build_spec,
    on_enter,
    on_exit,
    on_transition,
)
from deerflow.statemachine._runner import StateMachineMixin

__all__ = [
    "MACHINE_FOLD",
    "MACHINE_PLUGIN",
    "MachineSpec",
    "State",
    "StateMachine",
    "StateMachineMixin",
    "Transition",
    "on_enter",
    "on_exit",
    "on_transition",
]

_DSL = {"on_transition": on_transition, "on_enter": on_enter, "on_exit": on_exit}


class _MachineMeta(type):
    """Provides the hook decorators in class bodies and validates each machine class."""

    @classmethod
    def __prepare__(
        cls, name: str, bases: tuple[type, ...], /, **kwargs: Any
    ) -> MutableMapping[str, object]:
        return dict(_DSL)

    def __new__(
        cls, name: str, bases: tuple[type, ...], namespace: dict[str, Any], **kwargs: Any
    ) -> _MachineMeta:
        for key, value in _DSL.items():
            if namespace.get(key) is value:
                del namespace[key]
        machine = super().__new__(cls, name, bases, namespace, **kwargs)
        if bases:  # the base class itself declares nothing
            machine.__deerflow_machine__ = build_spec(machine)  # type: ignore[attr-defined]
        return machine


class StateMachine(metaclass=_MachineMeta):
    """Base class of state machines; decorate a subclass with ``@workflow.state_machine``."""

    retries: int = 3
    retry_delay: float = 1.0
    timeout: float | None = None

    def route(self, event: Any) -> tuple[str, str] | None:
        """Map a trigger event to ``(instance id, transition)``; ``None`` starts an instance.

        Override it to let the workflow's triggers (Kafka, webhook, S3) drive existing
        instances: e.g. ``return event.message["order_id"], event.message["action"]``. The
        event's identity makes the request idempotent; a transition the instance cannot take
        goes to the dead-letter topic with the reason.
        """
        return None
