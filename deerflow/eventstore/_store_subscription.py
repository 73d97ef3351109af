"""Subscriptions (consumer groups with explicit acknowledgement) and in-memory projections.

Both run on the store's home loop; the public objects returned by ``EventStore.subscribe`` and
``EventStore.projection`` reach them from whatever loop the caller is on.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections import deque
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

from deerflow._eventtypes import TypeFilter
from deerflow._lifecycle import Lifecycle
from deerflow.errors import EventStoreError
from deerflow.eventstore._store_index import Admission
from deerflow.eventstore._store_model import StoredEvent, decode_unit
from deerflow.log.base import GroupConsumer, LogReader, Record, StartFrom, TopicPartition
from deerflow.runtime.integration import OffsetTracker  # the engine's, not re-invented

if TYPE_CHECKING:
    from deerflow.eventstore._store_core import EventStreams
    from deerflow.eventstore._store_loop import HomeLoop

log = logging.getLogger("deerflow.eventstore")

#: Streams (and event ids) a subscriber remembers per partition to skip duplicates.
REMEMBERED = 100_000


class SubscriptionCore:
    """One member of a consumer group over the event topic, delivering events one at a time.

    Delivery is at least once: a partition's committed offset only moves over records whose
    delivered events were all acknowledged, so whatever is not acknowledged when the member
    stops, dies or loses the partition is delivered again (to whoever holds it next).
    Duplicates and losing units (see :mod:`._store_index`) are skipped, as are events of
    other types, which count as acknowledged.
    """

    def __init__(
        self,
        streams: EventStreams,
        *,
        group: str,
        types: Collection[str] | None,
        start_from: StartFrom,
    ) -> None:

        self.group = group
        self._streams = streams
        self._wanted = TypeFilter(types)
        self._start_from = start_from
        self._consumer: GroupConsumer | None = None
        self._buffer: deque[StoredEvent] = deque()
        self._pending: dict[tuple[int, int], int] = {}
        self._admissions: dict[int, Admission] = {}
        self._offsets = OffsetTracker()

    async def start(self) -> None:
        """Join the group."""
        if self._consumer is None:
            self._consumer = self._streams.log.consumer(
                self.group, [self._streams.topic], listener=self, start_from=self._start_from
            )
            await self._consumer.start()

    async def stop(self) -> None:
        """Commit what was acknowledged and leave the group; idempotent."""
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            with contextlib.suppress(EventStoreError):
                await self._commit(consumer)
            await consumer.stop()

    async def next(self, timeout: float | None) -> StoredEvent | None:
        """The next event to handle, or ``None`` if none came within ``timeout`` seconds."""
        consumer = self._require()
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not self._buffer:
            with contextlib.suppress(EventStoreError):
                await self._commit(consumer)  # progress over skipped records
            left = 0.5 if deadline is None else min(0.5, deadline - loop.time())
            if left <= 0:
                return None
            for record in await consumer.poll(timeout=left, max_records=500):
                self._take(record)
        return self._buffer.popleft()

    def _take(self, record: Record) -> None:
        tp = record.tp
        self._offsets.begin(tp, record.offset)
        unit = decode_unit(record)
        admission = self._admissions.setdefault(record.partition, Admission(REMEMBERED))
        wanted = []
        if unit and admission.admit(unit, record.offset):
            wanted = [e for e in unit if self._wanted(e.type)]
        if not wanted:
            self._offsets.done(tp, record.offset)
            return
        self._pending[(record.partition, record.offset)] = len(wanted)
        self._buffer.extend(wanted)

    async def ack(self, event: StoredEvent) -> None:
        """Mark ``event`` handled; commits the group's offset as far as everything is."""
        if event.partition is None or event.offset is None:
            return  # not an event this subscription delivered
        key = (event.partition, event.offset)
        left = self._pending.get(key)
        if left is None:
            return  # acknowledged already, or its partition moved away meanwhile
        if left > 1:
            self._pending[key] = left - 1
            return
        del self._pending[key]
        self._offsets.done(TopicPartition(self._streams.topic, event.partition), event.offset)
        await self._commit(self._require())

    async def _commit(self, consumer: GroupConsumer) -> None:
        offsets = self._offsets.committable()
        held = consumer.assignment()
        offsets = {tp: offset for tp, offset in offsets.items() if tp in held}
        if offsets:
            await consumer.commit(offsets)
            self._offsets.committed(offsets)

    def _require(self) -> GroupConsumer:
        if self._consumer is None:
            raise EventStoreError(f"subscription {self.group!r} is not started")
        return self._consumer

    async def on_assigned(self, partitions: frozenset[TopicPartition]) -> None:
        """Partitions start afresh: what to skip is learnt again from their records."""
        for tp in partitions:
            self._admissions.pop(tp.partition, None)

    async def on_revoked(self, partitions: frozenset[TopicPartition]) -> None:
        """Commit what is acknowledged; undelivered and unacknowledged events go elsewhere."""
        if self._consumer is not None:
            with contextlib.suppress(EventStoreError):
                await self._commit(self._consumer)
        self._offsets.forget(partitions)
        gone = {tp.partition for tp in partitions}
        self._buffer = deque(e for e in self._buffer if e.partition not in gone)
        self._pending = {k: v for k, v in self._pending.items() if k[0] not in gone}
        for partition in gone:
            self._admissions.pop(partition, None)


Apply = Callable[[Any, StoredEvent], Any]


class ProjectionCore:
    """A read model kept in memory: ``apply(state, event) -> state`` over every event.

    It reads the whole topic from the start (no group: every process keeps its own copy)
    and then follows it. :meth:`caught_up` waits until it reflects everything appended
    before the call.
    """

    def __init__(
        self,
        streams: EventStreams,
        name: str,
        apply: Apply,
        initial: Any,
        types: Collection[str] | None,
    ) -> None:
        self.name = name
        self.state = initial
        self._streams = streams
        self._apply = apply
        self._wanted = TypeFilter(types)
        self._reader: LogReader | None = None
        self._task: asyncio.Task[None] | None = None
        self._moved = asyncio.Event()
        self._admissions: dict[int, Admission] = {}
        self._positions: dict[TopicPartition, int] = {}
        self.applied = 0
        self.error: Exception | None = None

    async def start(self) -> None:
        """Start reading from the beginning of the topic."""
        if self._task is not None:
            return
        start = {TopicPartition(self._streams.topic, p): 0 for p in range(self._streams.partitions)}
        self._positions = dict(start)
        self._reader = self._streams.log.reader(start)
        await self._reader.start()
        self._task = asyncio.create_task(self._run(self._reader), name=f"projection-{self.name}")

    async def stop(self) -> None:
        """Stop following the topic; the state stays readable."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        reader, self._reader = self._reader, None
        if reader is not None:
            await reader.stop()

    async def _run(self, reader: LogReader) -> None:
        try:
            while True:
                for record in await reader.poll(timeout=0.5, max_records=1000):
                    await self._feed(record)
                # Positions as of fully applied batches only (an async apply awaits mid-batch).
                self._positions = {tp: reader.position(tp) for tp in self._positions}
                self._moved.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # kept for caught_up() to raise
            log.exception("projection %s stopped: apply failed", self.name)
            self.error = exc
            self._moved.set()

    async def _feed(self, record: Record) -> None:
        unit = decode_unit(record)
        admission = self._admissions.setdefault(record.partition, Admission())
        if not unit or not admission.admit(unit, record.offset):
            return
        for event in unit:
            if self._wanted(event.type):
                result = self._apply(self.state, event)
                self.state = await result if inspect.isawaitable(result) else result
                self.applied += 1

    async def caught_up(self, timeout: float | None) -> Any:
        """Wait until every event appended before this call is applied; return the state."""
        if self._reader is None:
            raise EventStoreError(f"projection {self.name!r} is not started")
        tps = [TopicPartition(self._streams.topic, p) for p in range(self._streams.partitions)]
        targets = await self._streams.ends(tps)
        async with asyncio.timeout(timeout):
            while True:
                if self.error is not None:
                    raise EventStoreError(f"projection {self.name!r} failed: {self.error!r}")
                if all(self._positions.get(tp, 0) >= end for tp, end in targets.items()):
                    return self.state
                self._moved.clear()
                await self._moved.wait()


class Subscription(Lifecycle):
    """Events of chosen types for a consumer group; returned by ``EventStore.subscribe``.

    Use it as an async iterator inside ``async with``; acknowledge each event once handled::

        async with store.subscribe(types=["OrderCreated"], group="billing") as events:
            async for event in events:
                bill(event.data)
                await events.ack(event)

    Unacknowledged events are delivered again after a restart or a rebalance (at least once):
    make handling idempotent, e.g. keyed on ``event.id``.
    """

    def __init__(self, home: HomeLoop, core: SubscriptionCore) -> None:
        self._home = home
        self._core = core

    @property
    def group(self) -> str:
        """The consumer group."""
        return self._core.group

    async def start(self) -> None:
        """Join the group (partitions arrive with the first polls)."""
        await self._home.call(self._core.start)

    async def stop(self) -> None:
        """Commit what was acknowledged and leave the group."""
        await self._home.call(self._core.stop)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> StoredEvent:
        event = await self.get(None)
        assert event is not None
        return event

    async def get(self, timeout: float | None = None) -> StoredEvent | None:
        """The next event, or ``None`` after ``timeout`` seconds without one."""
        return await self._home.call(lambda: self._core.next(timeout))

    async def ack(self, event: StoredEvent) -> None:
        """Mark ``event`` handled (its offset is committed once all before it are)."""
        await self._home.call(lambda: self._core.ack(event))


class Projection(Lifecycle):
    """A read model kept up to date by following the topic; from ``EventStore.projection``.

    ``state`` is the fold of every admitted event of the chosen types, in partition order,
    by ``apply(state, event) -> state`` (sync or async). Start it with ``async with``;
    ``await projection.caught_up()`` returns the state once it reflects every event appended
    before the call.
    """

    def __init__(self, home: HomeLoop, core: ProjectionCore) -> None:
        self._home = home
        self._core = core

    @property
    def name(self) -> str:
        """The projection's name."""
        return self._core.name

    @property
    def state(self) -> Any:
        """The state as of the events applied so far."""
        return self._core.state

    @property
    def applied(self) -> int:
        """Events applied so far."""
        return self._core.applied

    async def start(self) -> None:
        """Read the topic from its start, then follow it."""
        await self._home.call(self._core.start)

    async def stop(self) -> None:
        """Stop following the topic."""
        await self._home.call(self._core.stop)

    async def caught_up(self, timeout: float | None = 30.0) -> Any:
        """The state, once every event appended before this call is applied."""
        return await self._home.call(lambda: self._core.caught_up(timeout))
