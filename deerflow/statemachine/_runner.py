"""Running a transition's user code: guard, exit hooks, handlers, enter hooks, in that order."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

from deerflow.engine._context import TaskContext
from deerflow.engine._taskdef import RetryPolicy, TaskDef
from deerflow.errors import TransitionNotAllowed
from deerflow.statemachine._model import MachineSpec


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
        kind="transition",
        retry=RetryPolicy(retries=cls.retries, retry_delay=cls.retry_delay),
        timeout=cls.timeout,
        options={"transition": name},
    )
