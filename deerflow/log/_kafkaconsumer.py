"""Readers and group members of :class:`~deerflow.log.kafka.KafkaEventLog`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from deerflow.errors import EventStoreError
from deerflow.log._kafkaclient import (
    ConsumerRebalanceListener,
    IllegalStateError,
    KafkaError,
    failure,
    ours,
    record_from,
    theirs,
)
from deerflow.log.base import (
    AssignmentListener,
    GroupConsumer,
    LogReader,
    Record,
    StartFrom,
    TopicPartition,
)

if TYPE_CHECKING:
    from deerflow.log.kafka import KafkaEventLog

logger = logging.getLogger(__name__)


class KafkaLogReader(LogReader):
    """Reads chosen partitions from chosen offsets with an unsubscribed ``AIOKafkaConsumer``."""

    def __init__(self, log: KafkaEventLog, start: Mapping[TopicPartition, int]) -> None:
        self._log = log
        self._positions: dict[TopicPartition, int] = dict(start)
        self._consumer: Any = None
        self._stopped = False
        # Per partition, the count of moves (revoke, seek) when it last moved: a poll drops
        # what it fetched of a partition that moved while it awaited.
        self._moves = 0
        self._moved: dict[TopicPartition, int] = {}

    async def start(self) -> None:
        """Connect, assign the partitions and seek to the start offsets; idempotent."""
        if self._consumer is not None or self._stopped:
            return
        consumer = self._log.new_consumer(auto_offset_reset="earliest")
        await self._log.start_consumer(consumer)
        consumer.assign([theirs(tp) for tp in self._positions])
        for tp, offset in self._positions.items():
            consumer.seek(theirs(tp), offset)
        self._consumer = consumer

    async def stop(self) -> None:
        """Disconnect; idempotent and safe before :meth:`start`."""
        self._stopped = True
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()

    def _require(self) -> Any:
        if self._consumer is None:
            raise EventStoreError(f"{type(self).__name__} on {self._log.url} is not started")
        return self._consumer

    async def poll(
        self,
        timeout: float = 0.0,
        max_records: int = 1000,
    ) -> list[Record]:
        """See :meth:`LogReader.poll`."""
        consumer = self._require()
        try:
            batches = await consumer.getmany(
                timeout_ms=round(timeout * 1000), max_records=max_records
            )
        except KafkaError as exc:
            raise failure(self._log.url, "cannot read from", exc) from exc
        fetched = self._moves
        await self._follow_deleted(consumer, batches)
        # Nothing awaited from here on: the records go out under the assignment they were
        # fetched in. Those of a partition revoked meanwhile (and perhaps given straight back,
        # restarting at the committed offset) or sought elsewhere are not delivered: the
        # member was told its unfinished records go to the partition's next owner.
        records: list[Record] = []
        for their_tp, messages in batches.items():
            if self._moved.get(ours(their_tp), 0) > fetched:
                continue
            if messages and self._deliverable(consumer, their_tp, messages[0].offset):
                records.extend(record_from(message) for message in messages)
                self._positions[ours(their_tp)] = messages[-1].offset + 1
        self._learn_positions(consumer)
        return records

    def _moving(self, tps: frozenset[TopicPartition]) -> None:
        """``tps`` restart elsewhere (revoked, or sought): a poll under way drops them."""
        self._moves += 1
        for tp in tps:
            self._moved[tp] = self._moves

    async def _follow_deleted(self, consumer: Any, batches: Mapping[Any, Any]) -> None:
        """Where retention or ``delete_records`` removed the records at our position, the
        consumer restarts at the log's new start: follow it there, or the partition would
        never count as caught up (its lag measured from a position that no longer exists)."""
        for tp, position in list(self._positions.items()):
            their_tp = theirs(tp)
            if batches.get(their_tp) or not self._holds(tp):
                continue
            highwater = consumer.highwater(their_tp)
            if highwater is None or highwater <= position:
                continue
            try:
                # Bounded: aiokafka waits for a position being reset (a paused partition's
                # waits until it is fetched again); the next poll asks again.
                moved = await asyncio.wait_for(consumer.position(their_tp), 0.5)
            except (KafkaError, TimeoutError):  # no longer assigned, or not known yet
                continue
            if moved > position and self._positions.get(tp) == position:  # not moved meanwhile
                self._positions[tp] = moved

    def _deliverable(self, consumer: Any, tp: Any, first: int) -> bool:
        """Hook for group members: whether records of ``tp`` from ``first`` may go out now."""
        return True

    def _learn_positions(self, consumer: Any) -> None:
        """Hook for group members, whose positions start where the group left off."""

    def _holds(self, tp: TopicPartition) -> bool:
        return tp in self._positions

    def lag(self, tp: TopicPartition) -> int | None:
        """See :meth:`LogReader.lag`; from the high watermark of the last fetch."""
        if self._consumer is None or not self._holds(tp) or tp not in self._positions:
            return None
        highwater = self._consumer.highwater(theirs(tp))
        return None if highwater is None else max(0, highwater - self._positions[tp])

    def position(self, tp: TopicPartition) -> int:
        """See :meth:`LogReader.position`."""
        try:
            return self._positions[tp]
        except KeyError:
            raise EventStoreError(f"{tp} has no known position here", retriable=False) from None


class _RebalanceBridge(ConsumerRebalanceListener):  # type: ignore[misc]
    """Passes aiokafka's rebalance callbacks on to the member."""

    def __init__(self, member: KafkaGroupConsumer, consumer: Any) -> None:
        self._member = member
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._member._on_revoked(frozenset(map(ours, revoked)))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self._member._on_assigned(self._consumer, frozenset(map(ours, assigned)))


class KafkaGroupConsumer(KafkaLogReader, GroupConsumer):
    """A member of a Kafka consumer group, committing explicitly.

    Kafka rebalances eagerly: at every membership change ``on_revoked`` gets all the member's
    partitions and ``on_assigned`` all of its new ones, including those it keeps.
    """

    def __init__(
        self,
        log: KafkaEventLog,
        group: str,
        topics: Sequence[str],
        *,
        listener: AssignmentListener | None,
        start_from: StartFrom,
    ) -> None:
        super().__init__(log, {})
        self._group = group
        self._topics = list(topics)
        self._listener = listener
        self._start_from = start_from
        # Partitions whose on_assigned has returned: aiokafka fetches new partitions while the
        # listener still runs, so delivery is gated here to keep the interface's promise.
        self._ready: set[TopicPartition] = set()
        self._paused: set[TopicPartition] = set()  # by the user, as opposed to by the gate
        self._asking: dict[TopicPartition, asyncio.Task[int]] = {}
        self._converted: tuple[object, frozenset[TopicPartition]] = (None, frozenset())

    async def start(self) -> None:
        """Create missing topics and join the group (assignment arrives with the next polls)."""
        if self._consumer is not None or self._stopped:
            return
        for topic in self._topics:
            await self._log.partition_count(topic)
        s = self._log.settings
        consumer = self._log.new_consumer(
            group_id=self._group,
            auto_offset_reset=self._start_from,
            session_timeout_ms=s.session_timeout_ms,
            heartbeat_interval_ms=s.heartbeat_interval_ms,
        )
        consumer.subscribe(self._topics, listener=_RebalanceBridge(self, consumer))
        # Set first: the first assignment's listener runs inside the start and may pause or
        # seek the partitions it gets.
        self._consumer = consumer
        try:
            await self._log.start_consumer(consumer, self._group)
        except BaseException:
            self._consumer = None
            raise

    async def stop(self) -> None:
        """Revoke (telling the listener, which may commit) and leave the group; idempotent."""
        if self._consumer is not None and not self._stopped:
            await self._on_revoked(self.assignment())
        for asked in self._asking.values():
            asked.cancel()
        self._asking.clear()
        await super().stop()

    def assignment(self) -> frozenset[TopicPartition]:
        """See :meth:`GroupConsumer.assignment`."""
        if self._consumer is None:
            return frozenset()
        theirs_now = self._consumer.assignment()  # one frozenset per assignment in aiokafka
        if theirs_now is not self._converted[0]:  # asked per event: convert once per assignment
            self._converted = (theirs_now, frozenset(map(ours, theirs_now)))
        return self._converted[1]

    def _holds(self, tp: TopicPartition) -> bool:
        return tp in self.assignment()

    def _deliverable(self, consumer: Any, tp: Any, first: int) -> bool:
        if ours(tp) in self._ready:
            return True
        if ours(tp) in self.assignment():
            consumer.seek(tp, first)  # fetched too early: read these again once ready
        return False

    def _learn_positions(self, consumer: Any) -> None:
        # Asked in the background: aiokafka resolves a new partition's position only when it
        # fetches it, which a paused partition does not, and a poll must not wait for that.
        held = self.assignment()
        for tp in (held & self._ready) - self._positions.keys() - self._asking.keys():
            self._asking[tp] = asyncio.create_task(consumer.position(theirs(tp)))
        for tp, asked in list(self._asking.items()):
            if not asked.done():
                continue
            del self._asking[tp]
            failed = asked.cancelled() or asked.exception() is not None
            if not failed and tp in held and tp not in self._positions:
                self._positions[tp] = int(asked.result())

    async def _on_revoked(self, tps: frozenset[TopicPartition]) -> None:
        self._moving(tps)
        if tps and self._listener is not None:
            await _call(self._listener.on_revoked(tps))
        self._ready -= tps
        self._paused -= tps  # as in Kafka, a partition comes back unpaused
        for tp in tps:
            self._positions.pop(tp, None)
            asked = self._asking.pop(tp, None)
            if asked is not None:
                asked.cancel()

    async def _on_assigned(self, consumer: Any, tps: frozenset[TopicPartition]) -> None:
        consumer.pause(*map(theirs, tps))  # no fetching for them until the listener has run
        if self._start_from == "latest":
            await _call(self._skip_to_end(consumer, tps))
        if self._listener is not None:  # even with none: the member learns its share
            await _call(self._listener.on_assigned(tps))
        self._ready |= tps
        # The consumer, not self._consumer: the first rebalance may run before start() returns.
        held = frozenset(map(ours, consumer.assignment()))
        consumer.resume(*map(theirs, (tps - self._paused) & held))

    async def _skip_to_end(self, consumer: Any, tps: frozenset[TopicPartition]) -> None:
        # aiokafka's own "latest" reset trusts ListOffsets, which some brokers report short.
        fresh = [tp for tp in sorted(tps) if await consumer.committed(theirs(tp)) is None]
        if fresh:
            for tp, end in (await self._log.true_ends(fresh)).items():
                consumer.seek(theirs(tp), end)

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """See :meth:`GroupConsumer.commit`; only partitions this member holds."""
        consumer = self._require()
        try:
            await consumer.commit({theirs(tp): offset for tp, offset in offsets.items()})
        except IllegalStateError as exc:
            raise EventStoreError(f"group {self._group!r}: {exc}", retriable=False) from exc
        except KafkaError as exc:
            raise failure(self._log.url, f"cannot commit group {self._group!r} on", exc) from exc

    async def committed(self, tp: TopicPartition) -> int | None:
        """See :meth:`GroupConsumer.committed`."""
        consumer = self._require()
        try:
            offset = await consumer.committed(theirs(tp))
        except KafkaError as exc:
            raise failure(self._log.url, "cannot read commits from", exc) from exc
        return None if offset is None else int(offset)

    async def seek(self, tp: TopicPartition, offset: int) -> None:
        """See :meth:`GroupConsumer.seek`."""
        try:
            self._require().seek(theirs(tp), offset)
        except IllegalStateError as exc:
            raise EventStoreError(f"group {self._group!r}: {exc}", retriable=False) from exc
        self._moving(frozenset({tp}))
        self._positions[tp] = offset

    def pause(self, partitions: frozenset[TopicPartition]) -> None:
        """See :meth:`GroupConsumer.pause`; partitions not held are ignored."""
        held = partitions & self.assignment()
        self._paused |= held
        self._require().pause(*map(theirs, held))

    def resume(self, partitions: frozenset[TopicPartition]) -> None:
        """See :meth:`GroupConsumer.resume`."""
        self._paused -= partitions
        self._require().resume(*map(theirs, partitions & self.assignment() & self._ready))


async def _call(hook: Any) -> None:
    try:
        await hook
    except Exception:
        # As aiokafka does: a failing listener is logged and the rebalance goes on.
        logger.exception("assignment listener failed")
