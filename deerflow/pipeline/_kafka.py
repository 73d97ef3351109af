"""Kafka topics as a pipeline's source and sink, through deerflow's own event log.

Going through :class:`~deerflow.log.base.EventLog` (rather than aiokafka directly)
shares the broker-quirk handling of the engine (Tansu's short ``end_offsets``, positions of
paused partitions) and gives pause/resume/commit in one narrow interface; the source also
works on any other log URL (``memory://``), which the engine's own topics use.

The source's two promises:

* **Backpressure by pausing.** Under ``block`` it fetches at most as many records as there are
  free permits and pauses all its partitions while none is free (the consumer stays in the
  group; nothing more is fetched or buffered). Under ``drop``/``sample`` it keeps reading and
  the strategy decides; records let go count as done.
* **At-least-once.** An offset is committed only when every record before it in its partition
  has left the last stage (completed, dead-lettered or dropped), tracked per partition with
  :class:`~deerflow.runtime._offsets.OffsetTracker`. A crash or a lost partition redelivers
  the rest. On a rebalance the source waits (up to ``revoke_timeout``) for the revoked
  partitions' in-flight records, commits, and lets them go.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import orjson

from deerflow.errors import ConnectorError, DeerflowError
from deerflow.log import EventLog, open_log
from deerflow.log.base import GroupConsumer, Record, StartFrom, TopicPartition
from deerflow.pipeline._io import PipelineContext, Source
from deerflow.pipeline._sinks import LogSink, encode_value
from deerflow.runtime.integration import OffsetTracker

if TYPE_CHECKING:
    from deerflow.pipeline._backpressure import Intake

Decode = Literal["json", "text", "bytes", "record"] | Callable[[Record], Any]
_MAX_POLL = 500


def kafka_log(bootstrap: str | None, context: PipelineContext, what: str) -> tuple[EventLog, bool]:
    """The log of a Kafka source or sink, and whether it owns (starts and stops) it.

    ``bootstrap`` (``host:port[,...]`` or a log URL) wins; then the serving engine's log if it
    is on Kafka; then ``DEERFLOW_KAFKA_BOOTSTRAP``.
    """
    if bootstrap is None and context.log is not None and context.log.url.startswith("kafka://"):
        return context.log, False
    bootstrap = bootstrap or os.environ.get("DEERFLOW_KAFKA_BOOTSTRAP")
    if not bootstrap:
        raise ConnectorError(
            f"{what} needs a Kafka cluster: pass bootstrap_servers=, serve on a"
            " kafka:// store, or set DEERFLOW_KAFKA_BOOTSTRAP",
            retriable=False,
        )
    return open_log(bootstrap if "://" in bootstrap else f"kafka://{bootstrap}"), True


def _decoder(decode: Decode) -> Callable[[Record], Any]:
    if callable(decode):
        return decode
    return {
        "json": lambda record: orjson.loads(record.value),
        "text": lambda record: record.value.decode(),
        "bytes": lambda record: record.value,
        "record": lambda record: record,
    }[decode]


class KafkaSource(Source):
    """Items from a Kafka topic, read as a consumer group (see the module docstring).

    Args:
        topic: the topic (or topics).
        group: the consumer group; default ``deerflow-pipeline-<workflow name>``.
        bootstrap_servers: ``host:port[,...]`` or a log URL; see :func:`kafka_log`.
        start_from: where a new group starts: ``"earliest"`` or ``"latest"``.
        decode: ``"json"`` (default), ``"text"``, ``"bytes"``, ``"record"`` (the whole
            :class:`~deerflow.log.base.Record`) or a function of the record. Records
            that fail to decode are dead-lettered (stage ``"source"``).
        commit_interval: seconds between commits of finished offsets.
        revoke_timeout: seconds a rebalance waits for in-flight records of revoked partitions.

    An item's key is the record's key.
    """

    unbounded = True

    def __init__(
        self,
        topic: str | Sequence[str],
        *,
        group: str | None = None,
        bootstrap_servers: str | None = None,
        start_from: StartFrom = "earliest",
        decode: Decode = "json",
        commit_interval: float = 1.0,
        revoke_timeout: float = 5.0,
    ) -> None:
        self.topics = [topic] if isinstance(topic, str) else list(topic)
        self.group = group
        self.bootstrap_servers = bootstrap_servers
        self.start_from: StartFrom = start_from
        self._decode = _decoder(decode)
        self.commit_interval = commit_interval
        self.revoke_timeout = revoke_timeout
        self.tracker = OffsetTracker()
        self._pending: Counter[TopicPartition] = Counter()
        self._progress = asyncio.Event()
        self._consumer: GroupConsumer | None = None
        self._log: EventLog | None = None
        self._owned = False
        self._paused = False
        self._closing = False
        self._last_commit = 0.0
        self.pauses = 0
        self.committed: dict[TopicPartition, int] = {}

    async def open(self, context: PipelineContext) -> None:
        """Join the group (assignment arrives with the first polls)."""
        self._log, self._owned = kafka_log(
            self.bootstrap_servers, context, f"KafkaSource({self.topics[0]!r})"
        )
        if self._owned:
            await self._log.start()
        self.group = self.group or f"deerflow-pipeline-{context.name}"
        self._consumer = self._log.consumer(
            self.group, self.topics, listener=self, start_from=self.start_from
        )
        await self._consumer.start()

    async def run(self, intake: Intake) -> None:
        """Poll and offer records until the pipeline stops."""
        consumer = self._consumer
        assert consumer is not None, "KafkaSource.run before open"
        while not intake.stopping.is_set():
            room = self._room(consumer, intake)
            if room == 0:
                await intake.wait_free(timeout=0.2)
            else:
                records = await consumer.poll(timeout=0.2, max_records=room)
                for record in records:
                    await self._offer(intake, record)
            await self._commit(due=True)

    def _room(self, consumer: GroupConsumer, intake: Intake) -> int:
        """How many records to fetch now; pauses every partition while there is no room."""
        free = intake.free()
        if intake.strategy != "block" or free is None or free > 0:
            if self._paused:
                consumer.resume(consumer.assignment())
                self._paused = False
            return _MAX_POLL if intake.strategy != "block" or free is None else min(free, _MAX_POLL)
        if not self._paused:
            self.pauses += 1
            self._paused = True
        consumer.pause(consumer.assignment())  # again each time: new partitions come unpaused
        return 0

    async def _offer(self, intake: Intake, record: Record) -> None:
        tp, offset = record.tp, record.offset
        self.tracker.begin(tp, offset)
        self._pending[tp] += 1

        def done() -> None:
            self.tracker.done(tp, offset)
            self._pending[tp] -= 1
            self._progress.set()

        origin = {"topic": record.topic, "partition": record.partition, "offset": offset}
        try:
            value = self._decode(record)
        except Exception as error:  # whatever the decoder raises, the record is unreadable
            raw = record.value.decode("utf-8", "replace")
            await intake.reject(
                raw,
                f"cannot decode record: {type(error).__name__}: {error}",
                key=record.key,
                origin=origin,
                ack=done,
            )
            return
        await intake.offer(value, key=record.key, origin=origin, ack=done)

    async def _commit(self, *, due: bool = False) -> None:
        if self._consumer is None or (
            due and time.monotonic() - self._last_commit < self.commit_interval
        ):
            return
        self._last_commit = time.monotonic()
        offsets = self.tracker.committable()
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except DeerflowError:
            return  # a rebalance moved a partition: its next owner redelivers from the last commit
        self.tracker.committed(offsets)
        self.committed.update(offsets)

    # -- the group's assignment listener ---------------------------------------------------------

    async def on_assigned(self, partitions: frozenset[TopicPartition]) -> None:
        """Nothing to do: a partition's tracking starts with its first record."""

    async def on_revoked(self, partitions: frozenset[TopicPartition]) -> None:
        """Let the revoked partitions' in-flight records finish (bounded), commit, forget."""
        try:
            # When closing, the pipeline has drained already: what is pending never finishes.
            async with asyncio.timeout(0 if self._closing else self.revoke_timeout):
                while any(self._pending[tp] for tp in partitions):
                    self._progress.clear()
                    await self._progress.wait()
        except TimeoutError:
            pass  # the next owner gets them again: at-least-once
        await self._commit()
        self.tracker.forget(partitions)
        for tp in partitions:
            self._pending.pop(tp, None)

    async def close(self) -> None:
        """Commit what finished, leave the group, disconnect."""
        consumer = self._consumer
        self._closing = True
        if consumer is not None:
            await self._commit()
            self._consumer = None  # leaving revokes everything; nothing is left to commit
            await consumer.stop()
        if self._owned and self._log is not None:
            await self._log.stop()

    def describe(self) -> dict[str, Any]:
        """Topics, group, pause count and committed offsets (``topic/partition: offset``)."""
        return {
            "kind": "kafka",
            "topics": self.topics,
            "group": self.group,
            "pauses": self.pauses,
            "committed": {
                f"{tp.topic}/{tp.partition}": offset
                for tp, offset in sorted(self.committed.items())
            },
        }


class KafkaSink(LogSink):
    """Writes each output to a Kafka topic, keyed by the item's key (or ``key(value)``).

    Args:
        topic: the topic.
        bootstrap_servers: ``host:port[,...]`` or a log URL; see :func:`kafka_log`.
        key: a function of the value giving the record key.
        encode: a function of the value giving the record's bytes (default: JSON; bytes and
            text as they are).
    """

    def __init__(
        self,
        topic: str,
        *,
        bootstrap_servers: str | None = None,
        key: Callable[[Any], Any] | None = None,
        encode: Callable[[Any], bytes] = encode_value,
    ) -> None:
        super().__init__(topic, key=key, encode=encode)
        self.bootstrap_servers = bootstrap_servers

    def resolve(self, context: PipelineContext) -> tuple[EventLog, bool]:
        """See :func:`kafka_log`."""
        return kafka_log(self.bootstrap_servers, context, f"KafkaSink({self.topic!r})")
