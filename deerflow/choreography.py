"""Choreography: services react to each other's events, with no coordinator.

``@workflow.event_handler("InventoryReserved")`` subscribes a function to the engine's domain
events topic (``engine.topics.events``; a Kafka topic on a ``kafka://`` store) and
``publish_event(type, data)`` appends to it. Every :class:`~deerflow.Engine` that runs tasks
and has the workflow registered runs its handlers (``deerflow worker app.py`` in any number
of processes), each handler as its own consumer group, so each handler sees every event once
per group while its processes share the partitions. To run one service per process, load the
same workflows everywhere and pick the handlers a process runs with ``$DEERFLOW_HANDLERS``
(comma-separated ``fnmatch`` patterns of ``workflow.function`` names) or
``Engine(..., handlers=[...])``; ``Engine(..., choreography=False)`` runs none.

Inside a task, ``publish_event`` ties the event to the run (correlation id: the run's;
causation id: the attempt key); inside a handler, to the handled event (its correlation id is
inherited, its id becomes the causation id). Ids are deterministic there, so a redelivered
attempt or event publishes nothing twice. Handlers are at least once: use
``event.idempotency_key`` (stable across redeliveries of one event to one handler) to make
their effects exactly once. A handler that keeps failing is retried with backoff, then the
event goes to the dead-letter topic (``engine.topics.dlq``) with the reason (``deerflow dlq
list`` shows it; replaying a handler's letter is not supported yet).

Async tasks and handlers use ``await publish_event_async(...)``: the blocking form refuses to
run inside an event loop. Faust agents take part through :mod:`deerflow.faust_bridge`.

Outside tasks and handlers, name the store: ``publish_event(type, data, store=engine)`` (a
started engine), or ``store=EventStore(...)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from deerflow.errors import DefinitionError, EventStoreError
from deerflow.eventstore._store_loop import running_loop
from deerflow.eventstore._store_model import StoredEvent
from deerflow.eventstore._store_origin import scope_now
from deerflow.log.base import StartFrom

if TYPE_CHECKING:
    from deerflow.engine._taskdef import RetryPolicy
    from deerflow.eventstore._store import EventStore

# Nothing of deerflow.engine is imported at module level: the engine imports this module while
# it loads (Workflow mixes ChoreographyMixin in), whichever of the two is imported first.

F = TypeVar("F", bound=Callable[..., Any])


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


class ChoreographyMixin:
    """Adds ``event_handler`` to :class:`~deerflow.Workflow`."""

    name: str

    @property
    def event_handlers(self) -> list[EventHandlerDef]:
        """The event handlers declared on this workflow."""
        handlers: list[EventHandlerDef] = self.__dict__.setdefault("_event_handlers", [])
        return handlers

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
            event_type: the event type to react to.
            retries: further calls after a failure; then the event is dead-lettered.
                Raising :class:`~deerflow.NonRetryableError` dead-letters it at once.
            retry_delay, backoff, max_retry_delay: the n-th retry waits
                ``retry_delay * backoff ** (n - 1)`` seconds, at most ``max_retry_delay``.
            timeout: seconds one call may take.
            start_from: where the handler's group starts the first time it runs.
        """
        from deerflow.engine._taskdef import ID_PATTERN, positive_or_none, retry_policy

        if not isinstance(event_type, str) or not event_type:
            raise DefinitionError(f"workflow {self.name!r}: event_handler needs an event type")
        policy = retry_policy(self.name, event_type, retries, retry_delay, backoff, max_retry_delay)
        limit = positive_or_none(self.name, event_type, "timeout", timeout)

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
    from deerflow import _choreography_service as service
    from deerflow.eventstore._store import EventStore

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
