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

from deerflow.choreography._api import ChoreographyMixin, publish_event, publish_event_async
from deerflow.choreography._handlers import EventHandlerDef, HandledEvent
from deerflow.choreography._service import CHOREOGRAPHY, ChoreographyPlugin

__all__ = [
    "CHOREOGRAPHY",
    "ChoreographyMixin",
    "ChoreographyPlugin",
    "EventHandlerDef",
    "HandledEvent",
    "publish_event",
    "publish_event_async",
]
