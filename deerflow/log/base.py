"""The narrow interface every event log implements.

An event log is a set of named topics, each split into a fixed number of partitions; a
partition is an append-only sequence of records numbered by offset from 0. Three things can be
done with it:

* :meth:`EventLog.append` a batch of messages; when it returns, every message is durable and
  its position is known.
* :meth:`EventLog.reader` reads chosen partitions from chosen offsets, without a group.
* :meth:`EventLog.consumer` joins a consumer group: the topic's partitions are split among the
  group's live members, each member reads its partitions from the group's committed offsets and
  commits explicitly.

Implementations: ``memory://`` (:mod:`.memory`), ``sqlite:///path`` (:mod:`.sqlite`) and
``kafka://host:port[,host:port]`` (:mod:`.kafka`); :func:`deerflow.log.open_log` picks
one by URL. One contract suite (``tests/eventstore/test_contract.py``) runs against all three.
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from deerflow._lifecycle import Lifecycle

__all__ = [
    "AssignmentListener",
    "EventLog",
    "GroupConsumer",
    "Headers",
    "LogReader",
    "Message",
    "Record",
    "StartFrom",
    "TopicPartition",
    "murmur2",
    "partition_for",
]

Headers = tuple[tuple[str, bytes], ...]
StartFrom = Literal["earliest", "latest"]


@dataclass(frozen=True, slots=True, order=True)
class TopicPartition:
    """One partition of one topic."""

    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class Message:
    """A record to append.

    ``partition=None`` places it by its key (:func:`partition_for`), so every record with one
    key lands in one partition and keeps its order; a message without key goes to partition 0.
    """

    topic: str
    value: bytes
    key: str | None = None
    headers: Headers = ()
    partition: int | None = None


@dataclass(frozen=True, slots=True)
class Record:
    """A record read back from the log."""

    topic: str
    partition: int
    offset: int
    key: str | None
    value: bytes
    headers: Headers
    timestamp_ms: int

    @property
    def tp(self) -> TopicPartition:
        """The partition this record was read from."""
        return TopicPartition(self.topic, self.partition)


class AssignmentListener(Protocol):
    """Told when a group member gains or loses partitions.

    ``on_revoked`` runs before the partitions move to another member (commit there);
    ``on_assigned`` runs before the first record of the new partitions is returned. A member
    that joins is told its share even when it is empty, so it knows it has one.
    """

    async def on_assigned(self, partitions: frozenset[TopicPartition]) -> None: ...

    async def on_revoked(self, partitions: frozenset[TopicPartition]) -> None: ...


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash, so deerflow and other Kafka producers agree on partitions."""
    length = len(data)
    seed = 0x9747B28C
    m = 0x5BD1E995
    r = 24
    h = (seed ^ length) & 0xFFFFFFFF
    rounded = length & ~3
    for i in range(0, rounded, 4):
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    rest = length & 3
    if rest == 3:
        h ^= data[rounded + 2] << 16
    if rest >= 2:
        h ^= data[rounded + 1] << 8
    if rest >= 1:
        h ^= data[rounded]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


# Bounded well below the keys a process holds (a key per run): it serves the keys in use now.
@functools.lru_cache(maxsize=4096)
def partition_for(key: str | None, partitions: int) -> int:
    """The partition a key belongs to, as Kafka's default partitioner computes it."""
    if key is None or partitions <= 1:
        return 0
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


class LogReader(Lifecycle):
    """Reads chosen partitions from chosen offsets, with no consumer group."""

    @abc.abstractmethod
    async def poll(
        self,
        timeout: float = 0.0,
        max_records: int = 1000,
    ) -> list[Record]:
        """Return the next records of the assigned partitions, waiting up to ``timeout`` s.

        Records of one partition come in offset order. An empty list means nothing new arrived
        within the timeout.
        """

    @abc.abstractmethod
    def lag(self, tp: TopicPartition) -> int | None:
        """Records between this reader's position and the partition's end, as of the last poll.

        ``None`` until a poll has learned the end. ``0`` means the reader had read everything
        that was durable when that poll ran. (Never derived from Kafka ``end_offsets``, which
        some brokers report wrongly.)
        """

    @abc.abstractmethod
    def position(self, tp: TopicPartition) -> int:
        """The offset of the next record this reader returns for ``tp``."""


class GroupConsumer(LogReader):
    """A member of a consumer group over one or more topics.

    A new group starts at ``start_from`` ("earliest" or "latest") on partitions it has never
    committed. Records are delivered at least once: whatever is not committed when a member
    stops or dies is delivered again to the member that gets the partition next.
    """

    @abc.abstractmethod
    def assignment(self) -> frozenset[TopicPartition]:
        """The partitions this member holds now."""

    @abc.abstractmethod
    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Durably record, per partition, the offset of the next record to deliver."""

    async def append_and_commit(
        self, log: EventLog, messages: Sequence[Message], offsets: Mapping[TopicPartition, int]
    ) -> None:
        """Append ``messages`` then commit ``offsets``.

        Atomic where the backend can do it (SQLite: one transaction); elsewhere the append is
        durable before the commit is attempted, so a crash between the two redelivers the input
        and the append happens again (the engine deduplicates by event id).
        """
        await log.append(messages)
        await self.commit(offsets)

    @abc.abstractmethod
    async def committed(self, tp: TopicPartition) -> int | None:
        """The group's committed offset for ``tp``, or ``None`` if never committed."""

    @abc.abstractmethod
    async def seek(self, tp: TopicPartition, offset: int) -> None:
        """Make the next poll return ``tp``'s records from ``offset`` (an assigned partition)."""

    @abc.abstractmethod
    def pause(self, partitions: frozenset[TopicPartition]) -> None:
        """Stop returning records of these partitions (backpressure) while staying in the group."""

    @abc.abstractmethod
    def resume(self, partitions: frozenset[TopicPartition]) -> None:
        """Undo :meth:`pause`."""


class EventLog(Lifecycle):
    """A partitioned, append-only, durable log of records. See the module docstring."""

    url: str
    #: Whether one :meth:`append` call is all-or-nothing: every message of it is durable, or
    #: none is. Callers that must order two batches (task messages before the history events
    #: that record them) may then append both in one call instead of one after the other.
    atomic_appends: bool = False
    #: The largest record value this log takes, in bytes; ``None``: no limit of its own.
    max_value_bytes: int | None = None

    @abc.abstractmethod
    async def ensure_topic(
        self, topic: str, partitions: int, *, keep_forever: bool = False, compact: bool = False
    ) -> int:
        """Create ``topic`` with ``partitions`` partitions unless it exists.

        ``keep_forever`` asks the log never to delete the topic's records (Kafka:
        ``retention.ms=-1``; run histories must not expire). ``compact`` lets the log keep
        only the newest record of each key (Kafka: ``cleanup.policy=compact``, applied by the
        broker's cleaner some time later; the local logs drop a key's older record when the
        newer one is appended). Offsets are never renumbered: a reader at the offset of a
        record that is gone gets the next one kept. Every value is a record, none a tombstone.
        Returns the topic's real partition count (an existing topic keeps its own, and on
        Kafka its settings; a local topic ensured with ``compact`` becomes compacted).
        """

    @abc.abstractmethod
    async def partition_count(self, topic: str) -> int:
        """Partitions of an existing topic; creates it with the log's default if missing."""

    @abc.abstractmethod
    async def append(self, messages: Sequence[Message]) -> list[tuple[TopicPartition, int]]:
        """Append ``messages`` durably and return each one's (partition, offset), in order.

        Messages with one key keep their relative order. Raises :class:`EventStoreError`
        when the log cannot be written; some messages may then be durable already (callers
        make appends idempotent by event id).
        """

    def written(self, tp: TopicPartition) -> int | None:
        """The offset after the last record this process appended to ``tp``; ``None`` when
        none, or when this log's readers learn their partitions' ends exactly.

        Kafka readers learn a partition's end only from their fetches, and a fetch answered
        before an append (prefetched, or under way) can report it as read; a reader that
        must see this process's own appends ("read your writes") waits for this offset.
        """
        return None

    @abc.abstractmethod
    def reader(self, start: Mapping[TopicPartition, int]) -> LogReader:
        """A reader over the given partitions from the given offsets (not started)."""

    @abc.abstractmethod
    def consumer(
        self,
        group: str,
        topics: Sequence[str],
        *,
        listener: AssignmentListener | None = None,
        start_from: StartFrom = "earliest",
    ) -> GroupConsumer:
        """A new member of ``group`` subscribed to ``topics`` (not started)."""

    @abc.abstractmethod
    async def group_offsets(
        self, group: str, partitions: Iterable[TopicPartition]
    ) -> dict[TopicPartition, int | None]:
        """``group``'s committed offset of each partition (``None``: never committed).

        For bookkeeping groups no member consumes (a position kept in the log itself).
        """

    @abc.abstractmethod
    async def commit_group(self, group: str, offsets: Mapping[TopicPartition, int]) -> None:
        """Durably commit ``offsets`` for ``group``, a group no member consumes.

        A group with members keeps its own commits (:meth:`GroupConsumer.commit`).
        """

    async def group_active(self, group: str) -> bool | None:
        """Whether some process consumes ``group`` now; ``None`` when this log cannot tell."""
        return None

    async def read_partition(
        self, tp: TopicPartition, from_offset: int = 0, *, max_wait: float = 0.2
    ) -> list[Record]:
        """Every record of ``tp`` from ``from_offset`` up to the end as of now."""
        return (await self.read_partitions({tp: from_offset}, max_wait=max_wait))[tp]

    async def read_partitions(
        self, start: Mapping[TopicPartition, int], *, max_wait: float = 0.2
    ) -> dict[TopicPartition, list[Record]]:
        """Every record of each partition from its start offset up to its end as of now.

        One reader serves all partitions, so rebuilding many partitions costs one connection.
        """
        records: dict[TopicPartition, list[Record]] = {tp: [] for tp in start}
        if not start:
            return records
        async with self.reader(start) as reader:
            wait = 0.0  # a local log knows its end at once; only wait when a fetch is needed
            while True:
                batch = await reader.poll(timeout=wait, max_records=5000)
                for record in batch:
                    records[record.tp].append(record)
                if not batch and all(reader.lag(tp) == 0 for tp in start):
                    return records
                wait = 0.0 if batch else max_wait
