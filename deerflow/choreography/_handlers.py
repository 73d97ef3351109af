"""What a workflow declares for choreography: its event handlers, and the event they get."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from deerflow.core import RetryPolicy
from deerflow.eventstore import StoredEvent
from deerflow.log.base import StartFrom


@dataclass(frozen=True)
class EventHandlerDef:
    """One ``@workflow.event_handler``.

    Attributes:
        event_type: the event type it handles.
        fn: ``fn(event)``, sync (run in a thread) or async.
        name: ``workflow.function``; names its consumer group and its idempotency keys.
        retry: retries with backoff before the event is dead-lettered.
        timeout: seconds one call may take (``None``: no limit).
        start_from: where its group starts the first time ("earliest": every event kept).
    """

    event_type: str
    fn: Callable[..., Any]
    name: str
    retry: RetryPolicy
    timeout: float | None = None
    start_from: StartFrom = "earliest"


class HandledEvent(StoredEvent):
    """The event a handler receives: the stored event (``type``, ``data``, ``id``,
    ``correlation_id``, ``causation_id``, ...) and how it is being delivered.

    Attributes:
        idempotency_key: ``handler/event-id``, the same at every redelivery of this event to
            this handler: key side effects on it.
        attempt: 1 for the first call, 2 for the first retry, ...
        handler: the handler's name.
    """

    idempotency_key: str
    attempt: int = 1
    handler: str = ""
