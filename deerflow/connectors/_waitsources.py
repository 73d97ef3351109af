"""The webhook paths and S3 buckets that ``wait_for_event(source=...)`` nodes name.

Each distinct spec is served once (``deerflow serve``), its input appended as events of every
type waited for on it (:class:`~deerflow.connectors.base.EventRequest`) instead of starting
runs. Webhook specs are one when they share method and path; S3 specs when they are equal.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from deerflow.core import WorkflowDef
from deerflow.errors import ConnectorError
from deerflow.events import EventTrigger, WebhookEvent
from deerflow.matching import WAIT_FOR_EVENT, WaitOptions


@dataclass
class WaitSource:
    """One spec that waits take events from: its name, the first workflow naming it, the types."""

    name: str
    workflow: str
    spec: EventTrigger
    events: list[str] = field(default_factory=list)

    def takes(self, spec: EventTrigger) -> bool:
        """Whether ``spec`` is this source; :class:`ConnectorError` if it clashes with it."""
        if isinstance(spec, WebhookEvent) and isinstance(self.spec, WebhookEvent):
            if (spec.method, spec.path) != (self.spec.method, self.spec.path):
                return False
            if spec != self.spec:
                raise ConnectorError(
                    f"wait_for_event sources {spec.method} {spec.path} are declared twice with "
                    "different options: declare one WebhookEvent and pass it to each wait",
                    retriable=False,
                )
            return True
        return spec == self.spec


def wait_sources(workflows: Iterable[WorkflowDef]) -> list[WaitSource]:
    """The webhook and S3 specs ``workflows``' waits name, each with the event types it feeds."""
    found: list[WaitSource] = []
    for wf in workflows:
        for task in wf.tasks.values():
            if task.kind is not WAIT_FOR_EVENT:
                continue
            opts = WAIT_FOR_EVENT.options(task, WaitOptions)
            if opts.via is None:
                continue
            source = next((s for s in found if s.takes(opts.via)), None)
            if source is None:
                name = opts.via.name or f"{wf.name}.{task.id}"
                source = WaitSource(name, wf.name, opts.via)
                found.append(source)
            if opts.event not in source.events:
                source.events.append(opts.event)
    return found
