"""``kafka://host:port[,host:port]``: the event log on a Kafka-protocol broker, through aiokafka.

Options go in the URL query or as keyword arguments (keywords win), see :class:`KafkaSettings`:
``kafka://broker:9092?partitions=8&idempotent=true``.

Two broker quirks shape this module (both seen on Tansu, harmless on Apache Kafka): the end of a
partition is only ever taken from a fetch response's high watermark, never from ListOffsets,
which may stop at the start of the last multi-record batch; and the idempotent producer is off
by default because aiokafka's InitProducerId does not work there (turn it on for real Kafka).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from deerflow.errors import EventStoreError
from deerflow.log._kafkaclient import (
    AIOKafkaAdminClient,
    AIOKafkaConsumer,
    AIOKafkaProducer,
    KafkaError,
    NewTopic,
    TopicAlreadyExistsError,
    connect,
    failure,
    for_code,
    ours,
    theirs,
)
from deerflow.log._kafkaconsumer import KafkaGroupConsumer, KafkaLogReader
from deerflow.log.base import (
    AssignmentListener,
    EventLog,
    GroupConsumer,
    LogReader,
    Message,
    StartFrom,
    TopicPartition,
    partition_for,
)

#: the producer libraries ``client=`` chooses from
CLIENTS = ("aiokafka", "confluent")

_PARSERS: dict[str, Callable[[str], object]] = {
    "int": int,
    "float": float,
    "str": str,
    "bool": lambda text: text.lower() in ("1", "true", "yes", "on"),
}


@dataclass(frozen=True)
class KafkaSettings:
    """How :class:`KafkaEventLog` talks to the brokers.

    Attributes:
        bootstrap: ``host:port[,host:port]`` from the URL.
        partitions: partitions of topics the log creates without being told a count.
        replication_factor: replicas of topics the log creates.
        idempotent: the idempotent producer (needs a broker that supports it for aiokafka).
        linger_ms: how long the producer waits to fill a batch. 0: an append on the critical
            path of a step goes out at once; appends made while a request is in flight are
            batched anyway, so throughput under load does not need a linger.
        fetch_max_wait_ms: how long a fetch may wait for data; it bounds how late a consumer
            sees a record that arrives while its fetch is parked (aiokafka's 500 ms default
            would add that to every step of a run).
        session_timeout_ms: a silent group member is dropped after this long (Kafka brokers
            refuse less than their ``group.min.session.timeout.ms``, 6 s by default; Tansu
            accepts 1 s, which the tests use for quick rebalances).
        heartbeat_interval_ms: group heartbeats; a join waits about half the session timeout.
        connect_timeout: seconds to reach the brokers at start before giving up (a group
            consumer gets two session timeouts more for its group's first assignment).
        client_id: shown in broker logs.
        client: the producer's library: ``aiokafka`` (the default), or ``confluent``
            (confluent-kafka, librdkafka's, with the same ``acks=all`` and delivery reports
            awaited; ``pip install confluent-kafka``). Consumers and the admin client are
            aiokafka's either way.
    """

    bootstrap: str
    partitions: int = 4
    replication_factor: int = 1
    idempotent: bool = False
    linger_ms: int = 0
    fetch_max_wait_ms: int = 50
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    connect_timeout: float = 10.0
    client_id: str = "deerflow"
    client: str = "aiokafka"

    @classmethod
    def from_url(cls, url: str, overrides: Mapping[str, object]) -> KafkaSettings:
        """Settings from a ``kafka://`` URL's host list and query, then ``overrides``."""
        parts = urlsplit(url)
        if parts.scheme != "kafka" or not parts.netloc:
            raise EventStoreError(f"not a kafka://host:port URL: {url!r}", retriable=False)
        types = {field.name: str(field.type) for field in fields(cls) if field.name != "bootstrap"}
        values: dict[str, Any] = {}
        for name, raw in [*parse_qsl(parts.query), *overrides.items()]:
            if name not in types:
                raise EventStoreError(f"unknown Kafka option {name!r} for {url}", retriable=False)
            values[name] = _PARSERS[types[name]](raw) if isinstance(raw, str) else raw
        settings = replace(cls(bootstrap=parts.netloc), **values)
        if settings.client not in CLIENTS:
            raise EventStoreError(
                f"unknown Kafka client {settings.client!r} for {url}: choose "
                f"{' or '.join(CLIENTS)}",
                retriable=False,
            )
        return settings


class KafkaEventLog(EventLog):
    """An :class:`EventLog` on Kafka (or any broker speaking its protocol).

    Args:
        url: ``kafka://host:port[,host:port][?option=value&...]``.
        **options: any :class:`KafkaSettings` field except ``bootstrap``.
    """

    #: The producer's request limit (aiokafka's ``max_request_size``, 1 MiB) less room for the
    #: record's key, headers and batch framing.
    max_value_bytes = 1_000_000

    def __init__(self, url: str, **options: object) -> None:
        self.url = url
        self.settings = KafkaSettings.from_url(url, options)
        self._producer: Any = None
        #: per partition, the offset after this process's last append (bounded by partitions)
        self._written: dict[TopicPartition, int] = {}
        self._admin: Any = None
        self._counts: dict[str, int] = {}
        self._children: weakref.WeakSet[LogReader] = weakref.WeakSet()

    async def start(self) -> None:
        """Connect the producer and the admin client; fails fast on an unreachable URL."""
        if self._producer is not None:
            return
        producer = self._new_producer()
        s = self.settings
        await connect(self.url, s.connect_timeout, producer.start(), producer.stop)
        admin = AIOKafkaAdminClient(bootstrap_servers=s.bootstrap, client_id=s.client_id)
        try:
            await connect(self.url, s.connect_timeout, admin.start(), admin.close)
        except EventStoreError:
            await producer.stop()
            raise
        self._producer, self._admin = producer, admin

    def _new_producer(self) -> Any:
        s = self.settings
        if s.client == "confluent":
            # Imported here: confluent-kafka is needed only by those who choose it.
            from deerflow.log._kafkaconfluent import ConfluentProducer

            return ConfluentProducer(
                s.bootstrap, s.client_id, s.linger_ms, s.idempotent, s.connect_timeout
            )
        return AIOKafkaProducer(
            bootstrap_servers=s.bootstrap,
            client_id=s.client_id,
            acks="all",
            enable_idempotence=s.idempotent,
            linger_ms=s.linger_ms,
        )

    async def stop(self) -> None:
        """Stop readers and consumers made by this log, then the clients; idempotent."""
        for child in list(self._children):
            await child.stop()
        producer, admin, self._producer, self._admin = self._producer, self._admin, None, None
        if producer is not None:
            await producer.stop()
            await admin.close()

    def _require(self) -> Any:
        if self._producer is None:
            raise EventStoreError(f"Kafka log {self.url} is not started")
        return self._producer

    async def ensure_topic(
        self, topic: str, partitions: int, *, keep_forever: bool = False, compact: bool = False
    ) -> int:
        """See :meth:`EventLog.ensure_topic`."""
        producer = self._require()
        configs = {"retention.ms": "-1"} if keep_forever else {}
        if compact:
            configs["cleanup.policy"] = "compact"
        new = NewTopic(
            topic, partitions, self.settings.replication_factor, topic_configs=configs or None
        )
        try:
            response = await self._admin.create_topics([new])
            for name, code, *detail in response.topic_errors:
                if code not in (0, TopicAlreadyExistsError.errno):
                    error = for_code(code)
                    raise EventStoreError(
                        f"cannot create topic {name!r} on {self.url}: {error.__name__} {detail}",
                        retriable=error.retriable,
                    )
            count = len(await producer.partitions_for(topic))
        except KafkaError as exc:
            raise failure(self.url, f"cannot create topic {topic!r} on", exc) from exc
        self._counts[topic] = count
        return count

    async def partition_count(self, topic: str) -> int:
        """See :meth:`EventLog.partition_count`."""
        if topic in self._counts:
            return self._counts[topic]
        return await self.ensure_topic(topic, self.settings.partitions)

    async def _place(self, message: Message) -> int:
        count = await self.partition_count(message.topic)
        if message.partition is None:
            return partition_for(message.key, count)
        if not 0 <= message.partition < count:
            raise EventStoreError(
                f"topic {message.topic!r} has {count} partitions, not {message.partition}",
                retriable=False,
            )
        return message.partition

    async def append(self, messages: Sequence[Message]) -> list[tuple[TopicPartition, int]]:
        """See :meth:`EventLog.append`; the whole batch is in flight before the first ack."""
        producer = self._require()
        placed = [(message, await self._place(message)) for message in messages]
        try:
            sent = [
                await producer.send(
                    m.topic,
                    m.value,
                    key=None if m.key is None else m.key.encode(),
                    partition=partition,
                    headers=list(m.headers),
                )
                for m, partition in placed
            ]
            acks = await asyncio.gather(*sent)
        except KafkaError as exc:
            raise failure(self.url, "cannot append to", exc) from exc
        placed_at = [(TopicPartition(ack.topic, ack.partition), ack.offset) for ack in acks]
        for tp, offset in placed_at:
            if offset >= self._written.get(tp, 0):
                self._written[tp] = offset + 1
        return placed_at

    def written(self, tp: TopicPartition) -> int | None:
        """See :meth:`EventLog.written`."""
        return self._written.get(tp)

    async def group_offsets(
        self, group: str, partitions: Iterable[TopicPartition]
    ) -> dict[TopicPartition, int | None]:
        """See :meth:`EventLog.group_offsets` (OffsetFetch through the admin client)."""
        wanted = [theirs(tp) for tp in partitions]
        self._require()
        try:
            # Partitions named: Tansu fails the request that asks for all of them.
            found = await self._admin.list_consumer_group_offsets(group, partitions=wanted)
        except KafkaError as exc:
            raise failure(self.url, f"cannot read group {group!r}'s offsets on", exc) from exc
        offsets: dict[TopicPartition, int | None] = {}
        for tp in wanted:
            meta = found.get(tp)
            offsets[ours(tp)] = None if meta is None or meta.offset < 0 else meta.offset
        return offsets

    async def commit_group(self, group: str, offsets: Mapping[TopicPartition, int]) -> None:
        """See :meth:`EventLog.commit_group`: a consumer of ``group`` that assigns itself the
        partitions (it never joins, so it rebalances nobody) commits and stops."""
        self._require()
        committer = self.new_consumer(group_id=group)
        await self.start_consumer(committer)
        try:
            committer.assign([theirs(tp) for tp in offsets])
            await committer.commit({theirs(tp): offset for tp, offset in offsets.items()})
        except KafkaError as exc:
            raise failure(self.url, f"cannot commit group {group!r}'s offsets on", exc) from exc
        finally:
            await committer.stop()

    async def group_active(self, group: str) -> bool | None:
        """See :meth:`EventLog.group_active`: whether the group has members (DescribeGroups)."""
        try:
            self._require()
            responses = await self._admin.describe_consumer_groups([group])
            # Each described group: (error_code, group_id, state, protocol_type, protocol,
            # members, ...).
            return any(g[5] for r in responses for g in r.groups if g[0] == 0)
        except Exception:  # an old broker, no permission: say "cannot tell"
            return None

    def reader(self, start: Mapping[TopicPartition, int]) -> LogReader:
        """See :meth:`EventLog.reader`."""
        reader = KafkaLogReader(self, start)
        self._children.add(reader)
        return reader

    def consumer(
        self,
        group: str,
        topics: Sequence[str],
        *,
        listener: AssignmentListener | None = None,
        start_from: StartFrom = "earliest",
    ) -> GroupConsumer:
        """See :meth:`EventLog.consumer`."""
        member = KafkaGroupConsumer(self, group, topics, listener=listener, start_from=start_from)
        self._children.add(member)
        return member

    def new_consumer(self, **options: Any) -> Any:
        """An ``AIOKafkaConsumer`` with this log's connection settings, not started."""
        s = self.settings
        return AIOKafkaConsumer(
            bootstrap_servers=s.bootstrap,
            client_id=s.client_id,
            enable_auto_commit=False,
            fetch_max_wait_ms=s.fetch_max_wait_ms,
            **options,
        )

    async def start_consumer(self, consumer: Any, group: str | None = None) -> None:
        """Start a consumer from :meth:`new_consumer`, failing fast if the brokers are away.

        A subscribed consumer's start also waits for its ``group``'s first assignment, which
        can take a session timeout or two when an earlier member's session is still open (it
        left without leaving the group, or the broker waits it out), so it gets that long.
        """
        s = self.settings
        if group is None:
            await connect(self.url, s.connect_timeout, consumer.start(), consumer.stop)
            return
        limit = s.connect_timeout + 2 * s.session_timeout_ms / 1000
        await connect(
            self.url,
            limit,
            consumer.start(),
            consumer.stop,
            waiting_for=f"consumer group {group!r} assigned no partitions (a "
            f"member that stopped without leaving the group holds the "
            f"join until its session times out)",
        )

    async def start_offsets(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """Each partition's first offset still kept (past what retention or
        ``delete_records`` removed)."""
        wanted = [theirs(tp) for tp in tps]
        probe = self.new_consumer()
        await self.start_consumer(probe)
        try:
            async with asyncio.timeout(self.settings.connect_timeout):
                found = await probe.beginning_offsets(wanted)
            return {ours(tp): int(offset) for tp, offset in found.items()}
        except (KafkaError, TimeoutError) as exc:
            raise failure(self.url, "cannot find partition starts on", exc) from exc
        finally:
            await probe.stop()

    async def true_ends(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """Each partition's end, from fetch high watermarks (ListOffsets may be short)."""
        wanted = [theirs(tp) for tp in tps]
        probe = self.new_consumer()
        await self.start_consumer(probe)
        try:
            probe.assign(wanted)
            # ListOffsets never overshoots, so fetching from there reaches the true end.
            await probe.seek_to_end(*wanted)
            async with asyncio.timeout(self.settings.connect_timeout):
                while missing := [tp for tp in wanted if probe.highwater(tp) is None]:
                    await probe.getmany(*missing, timeout_ms=100)
            return {ours(tp): probe.highwater(tp) for tp in wanted}
        except (KafkaError, TimeoutError) as exc:
            raise failure(self.url, "cannot find partition ends on", exc) from exc
        finally:
            await probe.stop()
