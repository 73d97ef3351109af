"""``memory://``: the event log in Python lists, for unit tests and :mod:`deerflow.testing`.

Nothing is written anywhere: records live as long as the process. ``memory://`` alone is a fresh
private log; ``memory://some-name`` is shared by every :class:`MemoryEventLog` opened with that
name in this process, so two in-process workers (or a "restarted" one) see the same records,
groups and committed offsets. Use it from one event loop at a time; it is not thread-safe.
A topic ensured with ``compact=True`` keeps only the newest record of each key, as Kafka's
compacted topics end up (offsets are not renumbered).
"""

from __future__ import annotations

import bisect
import time
import weakref
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import parse_qs, urlsplit

from deerflow.errors import EventStoreError
from deerflow.log._local import (
    LocalGroup,
    LocalGroupConsumer,
    LocalReader,
    LocalStorage,
    Notifier,
    commit_group,
    group_offsets,
)
from deerflow.log.base import (
    AssignmentListener,
    EventLog,
    GroupConsumer,
    LogReader,
    Message,
    Record,
    StartFrom,
    TopicPartition,
    partition_for,
)

DEFAULT_PARTITIONS = 4

# Named logs live for the whole process, like a file would; private ones die with their log.
_NAMED: dict[str, _MemoryStore] = {}


class _Partition:
    """One partition's records in offset order, with gaps where a compacted one dropped some."""

    __slots__ = ("end", "newest", "records")

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.end = 0
        #: For a compacted partition, the offset of each key's newest record; else ``None``.
        self.newest: dict[str, int] | None = None

    def add(self, record: Record) -> None:
        """Append ``record`` (at offset :attr:`end`), dropping its key's older record if
        the partition is compacted."""
        if self.newest is not None and record.key is not None:
            older = self.newest.get(record.key)
            if older is not None:
                del self.records[self._index(older)]
            self.newest[record.key] = record.offset
        self.records.append(record)
        self.end = record.offset + 1

    def compact(self) -> None:
        """Keep only the newest record of each key, now and from now on."""
        if self.newest is not None:
            return
        self.newest = {r.key: r.offset for r in self.records if r.key is not None}
        self.records = [r for r in self.records if r.key is None or self.newest[r.key] == r.offset]

    def read(self, offset: int, limit: int) -> list[Record]:
        """Up to ``limit`` records from ``offset`` (the next one kept, if it is gone)."""
        start = self._index(offset)
        return self.records[start : start + max(0, limit)]

    def _index(self, offset: int) -> int:
        return bisect.bisect_left(self.records, offset, key=lambda r: r.offset)


class _MemoryStore(LocalStorage):
    """Records, committed offsets and groups of one memory log (possibly shared by name)."""

    def __init__(self) -> None:
        self.notifier = Notifier()
        self.partitions: dict[str, list[_Partition]] = {}
        self.offsets: dict[str, dict[TopicPartition, int]] = {}
        self.groups: dict[str, LocalGroup] = {}

    def create(self, topic: str, partitions: int) -> int:
        if partitions < 1:
            raise EventStoreError(f"topic {topic!r} needs at least one partition", retriable=False)
        existing = self.partitions.get(topic)  # looked up first: every append places here
        if existing is None:
            existing = self.partitions[topic] = [_Partition() for _ in range(partitions)]
        return len(existing)

    def mark_compacted(self, topic: str) -> None:
        """Make every partition of ``topic`` keep only each key's newest record."""
        for partition in self.partitions[topic]:
            partition.compact()

    def append(self, messages: Sequence[Message], default: int) -> list[tuple[TopicPartition, int]]:
        # Place every message before storing any, so a bad one leaves the log untouched.
        placed = [(message, self._place(message, default)) for message in messages]
        now_ms = time.time_ns() // 1_000_000
        positions = []
        for message, tp in placed:
            partition = self.partitions[tp.topic][tp.partition]
            record = Record(
                tp.topic, tp.partition, partition.end, message.key, message.value,
                tuple(message.headers), now_ms,
            )  # fmt: skip
            partition.add(record)
            positions.append((tp, record.offset))
        if positions:
            self.notifier.notify()
        return positions

    def _place(self, message: Message, default: int) -> TopicPartition:
        count = self.create(message.topic, default)
        partition = message.partition
        if partition is None:
            partition = partition_for(message.key, count)
        elif not 0 <= partition < count:
            raise EventStoreError(
                f"topic {message.topic!r} has {count} partitions, not {partition}",
                retriable=False,
            )
        return TopicPartition(message.topic, partition)

    def _partition(self, tp: TopicPartition) -> _Partition:
        partitions = self.partitions.get(tp.topic, [])
        return partitions[tp.partition] if tp.partition < len(partitions) else _Partition()

    async def fetch(
        self, positions: Sequence[tuple[TopicPartition, int]], max_records: int
    ) -> tuple[list[Record], dict[TopicPartition, int]]:
        out: list[Record] = []
        ends: dict[TopicPartition, int] = {}
        for tp, offset in positions:
            partition = self._partition(tp)
            ends[tp] = partition.end
            out.extend(partition.read(offset, max_records - len(out)))
        return out, ends

    async def end_offset(self, tp: TopicPartition) -> int:
        return self._partition(tp).end

    async def partition_count(self, topic: str, default: int) -> int:
        return self.create(topic, default)

    async def load_committed(self, group: str, tp: TopicPartition) -> int | None:
        return self.offsets.get(group, {}).get(tp)

    async def store_committed(
        self,
        group: LocalGroup,
        offsets: Mapping[TopicPartition, int],
        messages: Sequence[Message],
        default_partitions: int,
    ) -> None:
        # No await between the two: nothing else can run in between, so this is atomic.
        self.append(messages, default_partitions)
        self.offsets.setdefault(group.name, {}).update(offsets)


class MemoryEventLog(EventLog):
    """An :class:`EventLog` kept in this process's memory.

    Args:
        url: ``memory://`` (private) or ``memory://name`` (shared in-process by name), with an
            optional ``?partitions=N`` default for topics created implicitly.
        partitions: overrides the URL's default partition count.
    """

    atomic_appends = True  # one append runs without an await in between

    def __init__(self, url: str = "memory://", *, partitions: int | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme != "memory":
            raise EventStoreError(f"not a memory:// URL: {url!r}", retriable=False)
        query = parse_qs(parts.query)
        self.url = url
        self.default_partitions = partitions or int(
            query.get("partitions", [DEFAULT_PARTITIONS])[0]
        )
        name = parts.netloc + parts.path
        self._store = _NAMED.setdefault(name, _MemoryStore()) if name else _MemoryStore()
        # Weak, so readers that were stopped and dropped (read_partition) do not pile up.
        self._children: weakref.WeakSet[LogReader] = weakref.WeakSet()

    async def start(self) -> None:
        """Nothing to connect; present for the common lifecycle."""

    async def stop(self) -> None:
        """Stop every reader and consumer made by this log; the records stay."""
        for child in list(self._children):
            await child.stop()

    async def ensure_topic(
        self, topic: str, partitions: int, *, keep_forever: bool = False, compact: bool = False
    ) -> int:
        """See :meth:`EventLog.ensure_topic`; ``compact`` applies to an existing topic too."""
        count = self._store.create(topic, partitions)
        if compact:
            self._store.mark_compacted(topic)
        return count

    async def partition_count(self, topic: str) -> int:
        """See :meth:`EventLog.partition_count`."""
        return self._store.create(topic, self.default_partitions)

    async def append(self, messages: Sequence[Message]) -> list[tuple[TopicPartition, int]]:
        """See :meth:`EventLog.append`; all-or-nothing for one call."""
        return self._store.append(messages, self.default_partitions)

    async def group_offsets(
        self, group: str, partitions: Iterable[TopicPartition]
    ) -> dict[TopicPartition, int | None]:
        """See :meth:`EventLog.group_offsets`."""
        return await group_offsets(self._store, group, partitions)

    async def commit_group(self, group: str, offsets: Mapping[TopicPartition, int]) -> None:
        """See :meth:`EventLog.commit_group`."""
        await commit_group(self._store, group, offsets)

    async def group_active(self, group: str) -> bool:
        """See :meth:`EventLog.group_active` (members live in this process only)."""
        local_group = self._store.groups.get(group)
        return local_group is not None and bool(local_group.members)

    def reader(self, start: Mapping[TopicPartition, int]) -> LogReader:
        """See :meth:`EventLog.reader`."""
        reader = LocalReader(self._store, start)
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
        """See :meth:`EventLog.consumer`; members share the group across same-named logs."""
        local_group = self._store.groups.setdefault(group, LocalGroup(group, self._store))
        member = LocalGroupConsumer(
            local_group,
            topics,
            listener=listener,
            start_from=start_from,
            default_partitions=self.default_partitions,
            log=self,
        )
        self._children.add(member)
        return member
