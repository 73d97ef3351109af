"""``EventStore``: domain events over an event log — publish, read, replay, subscribe, fold.

Design in one paragraph. The store is a view of one topic of an :class:`EventLog` (Kafka,
SQLite or memory). Constructing it connects nothing. Its I/O runs on one *home loop*
(:mod:`._store_loop`): the loop it is started on, or, when first used from synchronous code
such as a task body running in a worker thread, a private loop thread it owns. So
``store.publish(...)`` works from sync code (it blocks until the event is durable) and
``await store.publish_async(...)`` from any event loop. Events of a stream share its
partition; sequence numbers and optimistic concurrency follow :mod:`._store_index`. Inside a
task attempt or an event handler, events get deterministic ids and the run's (or handled
event's) correlation and causation ids (:mod:`._store_origin`), so a redelivered attempt
publishes nothing twice.

Optimistic concurrency is exact across processes on every backend, without a single-writer
rule and without Kafka transactions: a writer numbers a unit from the version it knows,
appends it, then reads back to where it landed; the first unit of a version in the partition
wins, every reader skips the others, and the losing writer gets ``ConcurrencyConflict`` (or
numbers again, when it gave no ``expected_version``). See :mod:`._store_index`.

Limits, stated plainly:

* A store that writes or reads streams keeps an index of its topic in memory (stream
  versions, and one entry per event id, ~100 bytes each), built by reading the topic once.
* A losing unit stays in the log (ignored). A consumer group whose committed offset falls
  exactly between a race's winner and its loser, and that restarts there, cannot tell the
  loser from a first event and delivers it once: subscribers do not re-read the partition
  before their committed offset. Readers from a stream's start (``read``, ``load``,
  ``replay``, projections) are exact.
* Events from producers that do not number them (Faust, plain Kafka clients) are skipped
  as duplicates by id: always in reads, within 100,000 remembered ids per partition in
  subscriptions.
* ``read``/``replay`` return lists (memory grows with the answer); ``since`` filters on the
  events' own timestamps by scanning, as brokers' time indexes use storage time.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Self

from deerflow._lifecycle import Lifecycle
from deerflow.core import Topics
from deerflow.errors import EventStoreError
from deerflow.eventstore._store_core import Aggregate, EventStreams, Reducer
from deerflow.eventstore._store_loop import HomeLoop, close_at_exit
from deerflow.eventstore._store_model import StoredEvent
from deerflow.eventstore._store_origin import Overrides, draft, scope_now
from deerflow.eventstore._store_subscription import (
    Apply,
    Projection,
    ProjectionCore,
    Subscription,
    SubscriptionCore,
)
from deerflow.log import open_log
from deerflow.log.base import EventLog, StartFrom

DEFAULT_SQLITE_PATH = "deerflow-events.db"
DEFAULT_KAFKA = "localhost:9092"


class EventStore(Lifecycle):
    """Domain events kept on an event log: the spec's ``EventStore``.

    Example (the spec's form; the first publish connects)::

        event_store = EventStore(backend="kafka", topic="workflow-events")
        event_store.publish({"type": "OrderCreated", "payload": order,
                             "timestamp": datetime.utcnow()})

    Args:
        backend: ``"kafka"``, ``"sqlite"``, ``"memory"``, an event-log URL
            (``kafka://host:9092``, ``sqlite:///path.db``, ``memory://name``), an
            :class:`EventLog`, or an :class:`~deerflow.Engine` (its log and events topic).
        topic: the topic holding the events (default: the engine's events topic,
            ``$DEERFLOW_PREFIX.events``).
        bootstrap_servers: Kafka brokers for ``backend="kafka"`` (default
            ``$DEERFLOW_KAFKA_BOOTSTRAP``, else ``localhost:9092``).
        path: the SQLite file for ``backend="sqlite"`` (default ``deerflow-events.db``), or
            the name of a shared in-process log for ``backend="memory"``.
        partitions: partitions to create the topic with (default: the log's).
        cloudevents: write each published event as a CloudEvents 1.0 structured JSON record
            (``content-type: application/cloudevents+json``), for Knative, Argo Events or
            EventBridge consumers; reading is the same either way.
        **options: options of the event log class the store opens (e.g. Kafka
            ``session_timeout_ms``): an unknown one is refused, and any with a given log or engine
            raises TypeError.
    """

    def __init__(
        self,
        backend: Any = "sqlite",
        topic: str | None = None,
        *,
        bootstrap_servers: str | None = None,
        path: str | None = None,
        partitions: int | None = None,
        cloudevents: bool = False,
        **options: Any,
    ) -> None:
        log, owns, default_topic = _open(backend, bootstrap_servers, path, options)
        self.topic = topic or default_topic
        self.url = log.url
        self._streams = EventStreams(
            log, self.topic, owns_log=owns, partitions=partitions, cloudevents=cloudevents
        )
        self._home = HomeLoop(
            f"EventStore({self.url}, {self.topic})", self._streams.start, may_spawn=owns
        )
        close_at_exit(self._home, self._streams.stop)

    def __repr__(self) -> str:
        return f"EventStore(url={self.url!r}, topic={self.topic!r})"

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, with this event loop as the store's home; optional (first use connects)."""
        await self._home.call(_nothing)

    async def stop(self) -> None:
        """Disconnect; idempotent."""
        await self._home.aclose(self._streams.stop)

    aclose = stop

    def close(self) -> None:
        """Disconnect from synchronous code."""
        self._home.close(self._streams.stop)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- publishing --------------------------------------------------------------------------

    def publish(
        self,
        event: Any,
        data: Any = None,
        *,
        stream: str | None = None,
        expected_version: int | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        id: str | None = None,
    ) -> StoredEvent:
        """Append one event durably and return it as stored (blocking; sync code only).

        Args:
            event: a dict in the spec's shape (``type``, ``payload``, ``timestamp``...), a
                pydantic model, or an event type name (then ``data`` is its body).
            data: the body when ``event`` is a type name.
            stream: the stream (aggregate id); default the event's ``stream``, else its
                correlation id (inside a task: the run's).
            expected_version: append only if the stream is at this version, else raise
                :class:`~deerflow.errors.ConcurrencyConflict` (0: the stream must be new).
            correlation_id, causation_id, id: override what the context would give.

        Raises:
            RuntimeError: called inside a running event loop (use :meth:`publish_async`).
        """
        drafts, after = self._drafts([event], data, stream, correlation_id, causation_id, id)
        stored = self._home.call_blocking(
            lambda: self._streams.append(drafts, expected_version=expected_version, after=after),
            what="publish()",
        )
        return stored[0]

    async def publish_async(
        self,
        event: Any,
        data: Any = None,
        *,
        stream: str | None = None,
        expected_version: int | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        id: str | None = None,
    ) -> StoredEvent:
        """:meth:`publish` for async code."""
        drafts, after = self._drafts([event], data, stream, correlation_id, causation_id, id)
        stored = await self._home.call(
            lambda: self._streams.append(drafts, expected_version=expected_version, after=after)
        )
        return stored[0]

    apublish = publish_async

    def append(
        self, stream: str, events: Sequence[Any], *, expected_version: int | None = None
    ) -> list[StoredEvent]:
        """Append ``events`` to ``stream`` atomically (all or none), blocking.

        Raises:
            ConcurrencyConflict: ``expected_version`` is given and the stream is elsewhere.
        """
        drafts, after = self._drafts(events, None, stream, None, None, None)
        return self._home.call_blocking(
            lambda: self._streams.append(drafts, expected_version=expected_version, after=after),
            what="append()",
        )

    async def append_async(
        self, stream: str, events: Sequence[Any], *, expected_version: int | None = None
    ) -> list[StoredEvent]:
        """:meth:`append` for async code."""
        drafts, after = self._drafts(events, None, stream, None, None, None)
        return await self._home.call(
            lambda: self._streams.append(drafts, expected_version=expected_version, after=after)
        )

    def _drafts(
        self,
        events: Sequence[Any],
        data: Any,
        stream: str | None,
        correlation_id: str | None,
        causation_id: str | None,
        event_id: str | None,
    ) -> tuple[list[StoredEvent], tuple[str, int, int] | None]:
        # Runs in the caller's thread: the task or handler context is visible only here.
        if not events:
            raise ValueError("nothing to append: pass at least one event")
        scope = scope_now()
        first = draft(
            events[0], data, scope, Overrides(stream, correlation_id, causation_id, event_id)
        )
        rest = Overrides(first.stream, first.correlation_id, causation_id)
        drafts = [first, *(draft(e, None, scope, rest) for e in events[1:])]
        return drafts, scope.after if scope is not None else None

    # -- reading -----------------------------------------------------------------------------

    def read(self, stream: str) -> list[StoredEvent]:
        """Every event of ``stream`` in order, as of now (blocking)."""
        return self._home.call_blocking(lambda: self._streams.read(stream), what="read()")

    async def read_async(self, stream: str) -> list[StoredEvent]:
        """:meth:`read` for async code."""
        return await self._home.call(lambda: self._streams.read(stream))

    def replay(
        self,
        *,
        from_offset: int | Mapping[int, int] = 0,
        since: datetime | None = None,
        types: Collection[str] | None = None,
    ) -> list[StoredEvent]:
        """Every event of the topic, oldest first, as of now (blocking).

        Args:
            from_offset: start offset for every partition, or per partition
                (``{partition: offset}``; each event carries its ``partition``/``offset``).
            since: only events whose timestamp is at or after this (timezone-aware) time.
            types: only events of these types (``*`` patterns too: ``com.acme.order.*``).
        """
        return self._home.call_blocking(
            lambda: self._streams.replay(from_offset=from_offset, since=since, types=types),
            what="replay()",
        )

    async def replay_async(
        self,
        *,
        from_offset: int | Mapping[int, int] = 0,
        since: datetime | None = None,
        types: Collection[str] | None = None,
    ) -> list[StoredEvent]:
        """:meth:`replay` for async code."""
        return await self._home.call(
            lambda: self._streams.replay(from_offset=from_offset, since=since, types=types)
        )

    def load(
        self,
        stream: str,
        reducer: Reducer,
        initial: Any = None,
        *,
        snapshot_every: int | None = None,
        snapshot_key: str | None = None,
    ) -> Aggregate:
        """Rebuild an aggregate: fold ``stream`` with ``reducer(state, event) -> state``.

        With ``snapshot_every=N`` the fold starts at the latest snapshot and stores a new
        one whenever it folded N events or more (states must be JSON). Pass the returned
        ``version`` as ``expected_version`` when appending the aggregate's next events.
        """
        return self._home.call_blocking(
            lambda: self._streams.load(
                stream, reducer, initial, snapshot_every=snapshot_every, snapshot_key=snapshot_key
            ),
            what="load()",
        )

    async def load_async(
        self,
        stream: str,
        reducer: Reducer,
        initial: Any = None,
        *,
        snapshot_every: int | None = None,
        snapshot_key: str | None = None,
    ) -> Aggregate:
        """:meth:`load` for async code."""
        return await self._home.call(
            lambda: self._streams.load(
                stream, reducer, initial, snapshot_every=snapshot_every, snapshot_key=snapshot_key
            )
        )

    # -- following ---------------------------------------------------------------------------

    def subscribe(
        self,
        types: Collection[str] | None = None,
        group: str | None = None,
        *,
        start_from: StartFrom = "earliest",
    ) -> Subscription:
        """A consumer-group subscription: at-least-once delivery, explicit ``ack``.

        Args:
            types: event types to deliver (others are skipped and count as handled);
                ``com.acme.order.*`` is every type under ``com.acme.order.``.
            group: the consumer group; members of one group share the partitions. Without
                one, a private group: this subscriber alone sees every event.
            start_from: where a group that never committed starts.
        """
        import uuid

        name = group or f"{self.topic}.subscriber-{uuid.uuid4().hex[:12]}"
        return Subscription(
            self._home,
            SubscriptionCore(self._streams, group=name, types=types, start_from=start_from),
        )

    def projection(
        self, name: str, apply: Apply, initial: Any = None, *, types: Collection[str] | None = None
    ) -> Projection:
        """A read model ``apply(state, event) -> state`` kept up to date in this process."""
        return Projection(self._home, ProjectionCore(self._streams, name, apply, initial, types))


async def _nothing() -> None:
    return None


def _open(
    backend: Any, bootstrap: str | None, path: str | None, options: dict[str, Any]
) -> tuple[EventLog, bool, str]:
    """The log ``backend`` names, whether the store owns it, and the default topic."""

    default_topic = Topics.from_env().events
    engine_log, topics = getattr(backend, "log", None), getattr(backend, "topics", None)
    shared = isinstance(backend, EventLog) or (
        isinstance(engine_log, EventLog) and isinstance(topics, Topics)
    )
    if shared and options:
        # Options configure a log the store opens; one it is given is configured already.
        names = ", ".join(repr(n) for n in sorted(options))
        raise TypeError(f"EventStore() got unexpected keyword arguments {names} for a given log")
    if isinstance(backend, EventLog):
        return backend, False, default_topic
    if isinstance(engine_log, EventLog) and isinstance(topics, Topics):
        return engine_log, False, topics.events
    if not isinstance(backend, str):
        raise EventStoreError(
            f"EventStore backend must be a name, URL, EventLog or Engine, "
            f"not {type(backend).__name__}",
            retriable=False,
        )
    if "://" in backend:
        return open_log(backend, **options), True, default_topic
    if backend == "kafka":
        servers = bootstrap or os.environ.get("DEERFLOW_KAFKA_BOOTSTRAP") or DEFAULT_KAFKA
        url = f"kafka://{servers.removeprefix('kafka://')}"
        return open_log(url, **options), True, default_topic
    if backend == "sqlite":
        return open_log(f"sqlite:///{path or DEFAULT_SQLITE_PATH}", **options), True, default_topic
    if backend == "memory":
        return open_log(f"memory://{path or ''}", **options), True, default_topic
    raise EventStoreError(
        f"unknown EventStore backend {backend!r}: use 'kafka', 'sqlite', "
        "'memory' or an event-log URL",
        retriable=False,
    )
