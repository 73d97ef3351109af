"""What the loaded workflows wait for: the event types, match paths and source topics."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from deerflow.matching._kind import WAIT_FOR_EVENT, WaitOptions

if TYPE_CHECKING:
    from deerflow.core import WorkflowDef
    from deerflow.runtime import Engine


def wanted(engine: Engine) -> dict[str, set[tuple[str, ...]]]:
    """Event type -> the event-path tuples some loaded workflow matches it on."""
    found: dict[str, set[tuple[str, ...]]] = {}
    for wf in engine.registry:
        for task in wf.tasks.values():
            if task.kind is WAIT_FOR_EVENT:
                opts = WAIT_FOR_EVENT.options(task, WaitOptions)
                found.setdefault(opts.event, set()).add(tuple(p for p, _ in opts.match))
        for spec in cancel_specs(wf):
            found.setdefault(spec.event, set()).add(tuple(p for p, _ in spec.pairs))
    return found


def source_topics(engine: Engine) -> dict[str, set[str]]:
    """Topic -> the event types its messages are, from the waits' ``source=``."""
    found: dict[str, set[str]] = {}
    for wf in engine.registry:
        for task in wf.tasks.values():
            if task.kind is WAIT_FOR_EVENT:
                opts = WAIT_FOR_EVENT.options(task, WaitOptions)
                if opts.topic is not None:
                    found.setdefault(opts.topic, set()).add(opts.event)
    return found


def cancel_specs(wf: WorkflowDef) -> tuple[Any, ...]:
    """``wf``'s ``cancel_on`` conditions (none for a workflow without the mixin)."""
    specs: tuple[Any, ...] = getattr(wf, "cancel_specs", ())
    return specs
