"""Declaring event handlers on a workflow (``ChoreographyMixin``) and ``publish_event``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import deerflow.choreography._service as service
from deerflow.choreography._handlers import EventHandlerDef
from deerflow.core import RetryOptions, WorkflowDef
from deerflow.core.taskdef import ID_PATTERN
from deerflow.errors import DefinitionError, EventStoreError
from deerflow.eventstore import EventStore, StoredEvent
from deerflow.eventstore.integration import running_loop, scope_now
from deerflow.log.base import StartFrom

F = TypeVar("F", bound=Callable[..., Any])


class ChoreographyMixin(WorkflowDef):
    """Adds ``event_handler`` to :class:`~deerflow.Workflow`, and the plugin that serves it.

    Every workflow carries the choreography plugin, not only one with handlers: any task may
    ``publish_event``, through the store of the service the plugin runs in its engine.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.plugins.append(service.CHOREOGRAPHY)

    @property
    def event_handlers(self) -> list[EventHandlerDef]:
        """The event handlers declared on this workflow."""
        handlers: list[EventHandlerDef] = self.__dict__.setdefault("_event_handlers", [])
        return handlers

    def has_body(self) -> bool:
        """A workflow of event handlers only is valid without tasks (a service)."""
        return bool(self.event_handlers) or super().has_body()

    def event_handler(
        self,
        event_type: str,
        *,
        retries: int = 3,
        retry_delay: float = 0.5,
        backoff: float = 2.0,
        max_retry_delay: float = 30.0,
        timeout: float | None = None,
        start_from: StartFrom = "earliest",
    ) -> Callable[[F], F]:
        """Run the decorated ``fn(event)`` for every event of ``event_type``.

        Args:
            event_type: the event type to react to: a deerflow event's type or a CloudEvent's
                ``type`` (published with ``EventStore(cloudevents=True)`` or written to the
                events topic by another producer); ``*`` stands for any characters, so
                ``com.acme.order.*`` handles every type under ``com.acme.order.``.
            retries: further calls after a failure; then the event is dead-lettered.
                Raising :class:`~deerflow.NonRetryableError` dead-letters it at once.
            retry_delay, backoff, max_retry_delay: the n-th retry waits
                ``retry_delay * backoff ** (n - 1)`` seconds, at most ``max_retry_delay``.
            timeout: seconds one call may take.
            start_from: where the handler's group starts the first time it runs.
        """
        if not isinstance(event_type, str) or not event_type:
            raise DefinitionError(f"workflow {self.name!r}: event_handler needs an event type")
        options = RetryOptions(retries, retry_delay, backoff, max_retry_delay, timeout)
        policy = options.policy(self.name, event_type)
        limit = options.attempt_timeout(self.name, event_type)

        def register(fn: F) -> F:
            name = f"{self.name}.{getattr(fn, '__name__', 'handler')}"
            if not callable(fn) or not ID_PATTERN.match(name):
                raise DefinitionError(
                    f"workflow {self.name!r}: event handler {name!r} must be a named function"
                )
            if any(h.name == name for h in self.event_handlers):
                raise DefinitionError(f"workflow {self.name!r}: two event handlers named {name!r}")
            self.event_handlers.append(
                EventHandlerDef(event_type, fn, name, policy, limit, start_from)
            )
            return fn

        return register


def publish_event(
    event_type: str,
    data: Any = None,
    *,
    store: Any = None,
    stream: str | None = None,
    correlation_id: str | None = None,
    causation_id: str | None = None,
    id: str | None = None,
) -> StoredEvent:
    """Publish a domain event for event handlers (and triggers, projections) to react to.

    Blocks until the event is durable; from async code use :func:`publish_event_async`.

    Args:
        event_type: what happened (``"OrderStarted"``).
        data: its JSON body (``event.data`` for handlers).
        store: an :class:`~deerflow.eventstore.EventStore` or a started
            :class:`~deerflow.Engine`; inside a task or a handler, the engine running it.
        stream: the stream (default: the correlation id, so a chain keeps its order).
        correlation_id, causation_id, id: override what the context gives.

    Raises:
        RuntimeError: called inside a running event loop.
        EventStoreError: no store is given and none follows from the context.
    """
    target = _store_for(store)
    if running_loop() is not None:
        raise RuntimeError(
            "publish_event() blocks until the event is durable; in async code "
            "use await publish_event_async(...)"
        )
    return target.publish(
        event_type,
        data,
        stream=stream,
        correlation_id=correlation_id,
        causation_id=causation_id,
        id=id,
    )


async def publish_event_async(
    event_type: str,
    data: Any = None,
    *,
    store: Any = None,
    stream: str | None = None,
    correlation_id: str | None = None,
    causation_id: str | None = None,
    id: str | None = None,
) -> StoredEvent:
    """:func:`publish_event` for async code (async tasks and handlers)."""
    return await _store_for(store).publish_async(
        event_type,
        data,
        stream=stream,
        correlation_id=correlation_id,
        causation_id=causation_id,
        id=id,
    )


def _store_for(store: Any) -> EventStore:
    if isinstance(store, EventStore):
        return store
    if store is not None:
        return service.store_of_engine(store)
    scope = scope_now()
    if scope is not None and isinstance(scope.store, EventStore):
        return scope.store
    found = service.store_for_current_task()
    if found is not None:
        return found
    raise EventStoreError(
        "publish_event outside a task or an event handler needs a store: pass "
        "store=engine (a started Engine) or store=EventStore(...)",
        retriable=False,
    )
