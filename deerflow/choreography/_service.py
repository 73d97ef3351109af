"""The runtime of choreography: one service per engine running its workflows' event handlers.

Every :class:`~deerflow.Workflow` carries :data:`CHOREOGRAPHY`, so every engine that runs tasks
starts it. The service owns an :class:`EventStore` on the engine's own log and
events topic (its home loop is the engine's), which ``publish_event`` uses inside the engine's
tasks and handlers. Each handler is a :class:`HandlerRunner`: a consumer-group subscription
that calls the handler for each event of its type, retries failures with backoff, dead-letters
what keeps failing, and acknowledges only then.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import inspect
import logging
import os
import weakref
from collections.abc import Iterable, Sequence
from typing import Any

import deerflow._codec as _codec
from deerflow.choreography._handlers import EventHandlerDef, HandledEvent
from deerflow.errors import EventStoreError
from deerflow.eventstore import EventStore, StoredEvent, Subscription
from deerflow.eventstore.integration import PROCESS, PublishScope, current_scope
from deerflow.log.base import Message
from deerflow.runtime import BackgroundService, Engine, Plugin, Service
from deerflow.runtime.integration import current_task

log = logging.getLogger("deerflow.choreography")

# Services of running engines in this process, for publish_event inside their tasks.
_live: list[ChoreographyService] = []
# Stores for engines that run no service (clients: Engine(..., work=False)).
_client_stores: weakref.WeakKeyDictionary[Engine, EventStore] = weakref.WeakKeyDictionary()


class HandlerRunner(BackgroundService):
    """Runs one event handler as a member of its consumer group.

    Stopping cancels the loop: an event being handled is not acknowledged and will be
    delivered again.
    """

    def __init__(self, service: ChoreographyService, handler: EventHandlerDef) -> None:
        super().__init__()
        self.handler = handler
        self._service = service
        self.group = f"{service.engine.topics.prefix}.handler.{handler.name}"
        self._events: Subscription = service.store.subscribe(
            types=[handler.event_type], group=self.group, start_from=handler.start_from
        )
        self.handled = 0
        self.dead_lettered = 0

    def loop_name(self) -> str:
        """See :meth:`BackgroundService.loop_name`."""
        return f"handler-{self.handler.name}"

    async def _open(self) -> None:
        await self._events.start()  # joins the handler's group

    async def _close(self) -> None:
        await self._events.stop()

    async def _run(self) -> None:
        while True:
            try:
                event = await self._events.get(timeout=1.0)
                if event is None:
                    continue
                await self.handle(event)
                await self._events.ack(event)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception(
                    "handler %s: reading or acknowledging events failed; retrying",
                    self.handler.name,
                )
                await asyncio.sleep(1.0)

    async def handle(self, event: StoredEvent) -> None:
        """Call the handler on ``event`` with its retries; dead-letter it if they run out."""
        retry = self.handler.retry
        for attempt in range(1, retry.max_attempts + 1):
            try:
                await self._call(event, attempt)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure of user code is retried
                final = attempt >= retry.max_attempts or not getattr(exc, "retriable", True)
                log.warning(
                    "handler %s failed on event %s (attempt %d): %r",
                    self.handler.name,
                    event.id,
                    attempt,
                    exc,
                )
                if final:
                    await self._dead_letter(event, exc, attempt)
                    return
                await asyncio.sleep(retry.delay_before(attempt + 1))
            else:
                self.handled += 1
                return

    async def _call(self, event: StoredEvent, attempt: int) -> None:
        name = self.handler.name
        handled = HandledEvent(
            **dict(event), idempotency_key=f"{name}/{event.id}", attempt=attempt, handler=name
        )
        assert event.partition is not None and event.offset is not None
        scope = PublishScope(
            seed=handled.idempotency_key,
            correlation_id=event.correlation_id or event.id,
            causation_id=event.id,
            source=f"handler:{name}@{PROCESS}",
            store=self._service.store,
            after=(self._service.store.topic, event.partition, event.offset),
        )
        token = current_scope.set(scope)  # copied into the thread of a sync handler too
        try:
            fn, limit = self.handler.fn, self.handler.timeout
            if inspect.iscoroutinefunction(fn):
                await asyncio.wait_for(fn(handled), limit)
            else:
                await asyncio.wait_for(asyncio.to_thread(fn, handled), limit)
        finally:
            current_scope.reset(token)

    async def _dead_letter(self, event: StoredEvent, exc: BaseException, attempts: int) -> None:
        reason = (
            f"event handler {self.handler.name} failed {attempts} time(s): "
            f"{type(exc).__name__}: {exc}"
        )
        body = {
            "source": "event_handler",
            "reason": reason,
            "handler": self.handler.name,
            "group": self.group,
            "error": str(exc),
            "error_type": type(exc).__name__,
            "attempts": attempts,
            "event": event.to_json(),
            "topic": self._service.store.topic,
            "partition": event.partition,
            "offset": event.offset,
        }
        engine = self._service.engine
        await engine.log.append(
            [
                Message(
                    engine.topics.dlq,
                    _codec.dumps(body),
                    key=event.stream,
                    headers=(("deerflow-reason", reason.encode()[:1000]),),
                )
            ]
        )
        self.dead_lettered += 1


async def handle_again(engine: Engine, handler: EventHandlerDef, event: StoredEvent) -> bool:
    """Hand ``event`` to ``handler`` once more, outside its consumer group (a replay).

    Same idempotency key and published-event ids as the first delivery, the handler's own
    retries; a final failure dead-letters the event again. Returns whether it succeeded.
    """
    service = ChoreographyService(engine)
    await service.store.start()
    try:
        runner = HandlerRunner(service, handler)
        await runner.handle(event)
        return runner.dead_lettered == 0
    finally:
        await service.store.stop()


class ChoreographyService:
    """Event handlers of an engine's workflows, and the store ``publish_event`` uses there.

    Args:
        engine: the engine.
        only: name patterns (``fnmatch``) of the handlers this process runs; ``None``: all.
    """

    def __init__(self, engine: Engine, only: Sequence[str] | None = None) -> None:
        self.engine = engine
        self.store = EventStore(engine)
        self.runners: list[HandlerRunner] = []
        self._only = only

    async def start(self) -> None:
        """Attach the store to the engine's loop and start a runner per handler."""
        await self.store.start()
        _live.append(self)
        for workflow in list(self.engine.registry):
            for handler in getattr(workflow, "event_handlers", ()):
                if self._only is not None and not any(
                    fnmatch.fnmatchcase(handler.name, pattern) for pattern in self._only
                ):
                    continue
                self.runners.append(HandlerRunner(self, handler))
        # Each handler joins a group of its own, which takes seconds on Kafka: all at once.
        await asyncio.gather(*(runner.start() for runner in self.runners))

    async def stop(self) -> None:
        """Stop the runners and detach."""
        with contextlib.suppress(ValueError):
            _live.remove(self)
        while self.runners:
            await self.runners.pop().stop()
        await self.store.stop()


def _services(plugin: Plugin, engine: Engine) -> list[ChoreographyService]:
    """The engine's choreography: ``Engine(..., choreography=False)`` turns it off, and
    ``handlers=[pattern, ...]`` or ``$DEERFLOW_HANDLERS`` (comma-separated) picks handlers."""
    if plugin.option(engine, "choreography", True) is False:
        return []
    only = plugin.option(engine, "handlers")
    if only is None and os.environ.get("DEERFLOW_HANDLERS"):
        only = [p.strip() for p in os.environ["DEERFLOW_HANDLERS"].split(",") if p.strip()]
    return [ChoreographyService(engine, only)]


class ChoreographyPlugin(Plugin):
    """Runs an engine's event handlers, and gives its tasks the store ``publish_event`` uses."""

    options = frozenset({"choreography", "handlers"})

    def services(self, engine: Engine) -> Iterable[Service]:
        """The engine's :class:`ChoreographyService` (none if turned off)."""
        return _services(self, engine)


CHOREOGRAPHY = ChoreographyPlugin()


def store_of_engine(engine: Any) -> EventStore:
    """The store ``publish_event(..., store=engine)`` uses: the engine's service's, if any."""
    for service in _live:
        if service.engine is engine:
            return service.store
    if not isinstance(engine, Engine):
        raise EventStoreError(
            f"publish_event(store=...) takes an EventStore or an Engine, not "
            f"{type(engine).__name__}",
            retriable=False,
        )
    # A client engine (no worker, so no service): a store on its log, whose home becomes the
    # loop of the first async publish (the engine's loop, in practice).
    store = _client_stores.get(engine)
    if store is None:
        store = _client_stores[engine] = EventStore(engine)
    return store


def store_for_current_task() -> EventStore | None:
    """Inside a task attempt: the store of the engine running its workflow in this process."""
    ctx = current_task.get()
    if ctx is None:
        return None
    stores = {
        (s.store.url, s.store.topic): s.store for s in _live if ctx.workflow in s.engine.registry
    }
    if len(stores) > 1:
        raise EventStoreError(
            f"several engines in this process run workflow {ctx.workflow!r} on different "
            "stores: pass publish_event(..., store=...)",
            retriable=False,
        )
    return next(iter(stores.values()), None)
