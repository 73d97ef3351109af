"""``sqlite:///path.db``: the event log in one SQLite file, for one machine without a broker.

The file is in WAL mode with ``synchronous=FULL``: an append that returned survives a crash or
power cut. All SQLite work runs on one background thread per log, so the event loop never waits
on the disk, and appends that arrive while a write is in flight are *group-committed*: they
share the next transaction and its one fsync.

Several processes of **one machine** may open the same file (SQLite's locking is not reliable
over network filesystems): offsets are assigned inside the write transaction, and a poll notices
other processes' appends within ``poll_interval`` seconds (same-process appends wake it at
once). A consumer group is consumed by one process at a time, the holder of the group's lease;
members in other processes stay idle with an empty assignment until the holder stops, its lease
expires (5 s without heartbeat), or it is found dead on this host (then at once). Within the
holding process the group's members split the partitions as in Kafka.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar
from urllib.parse import parse_qs

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
from deerflow.log._sqlitefile import SqliteFile, WriteRequest, WriteResult
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

T = TypeVar("T")
logger = logging.getLogger(__name__)

DEFAULT_PARTITIONS = 4
LEASE_HEARTBEAT = 1.0
LEASE_TTL = 5.0


class _SqliteStorage(LocalStorage):
    """The async face of one :class:`SqliteFile`: its thread and the group-commit queue."""

    def __init__(self, path: str, url: str, recheck_interval: float) -> None:
        self.notifier = Notifier()
        self.recheck_interval = recheck_interval
        self.url = url
        self.file = SqliteFile(path)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deerflow-sqlite")
        self._pending: list[tuple[WriteRequest, asyncio.Future[WriteResult]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._counts: dict[str, int] = {}
        self._compacted: set[str] = set()  # topics marked compacted by this process

    async def run(self, call: Callable[[], T]) -> T:
        """Run ``call`` on the SQLite thread."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, call)
        except sqlite3.Error as exc:
            raise EventStoreError(f"SQLite log {self.url}: {exc}") from exc

    async def open(self) -> None:
        """Open the file now, so a bad path fails at start rather than at first use."""
        await self.run(lambda: self.file.conn)

    async def close(self) -> None:
        """Finish queued writes, then close the file and the thread."""
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        await self.run(self.file.close)
        self._executor.shutdown(wait=False)

    async def partition_count(self, topic: str, default: int) -> int:
        # A topic's partition count never changes once created, so it may be cached.
        if topic not in self._counts:
            if default < 1:
                raise EventStoreError(f"topic {topic!r} needs a partition", retriable=False)
            self._counts[topic] = await self.run(lambda: self.file.partition_count(topic, default))
        return self._counts[topic]

    async def place(
        self, messages: Sequence[Message], default: int
    ) -> list[tuple[TopicPartition, Message]]:
        """Each message with the partition it goes to; raises before anything is written."""
        placed = []
        counts = self._counts
        for message in messages:
            count = counts.get(message.topic)  # known: no await per message
            if count is None:
                count = await self.partition_count(message.topic, default)
            partition = message.partition
            if partition is None:
                partition = partition_for(message.key, count)
            elif not 0 <= partition < count:
                raise EventStoreError(
                    f"topic {message.topic!r} has {count} partitions, not {partition}",
                    retriable=False,
                )
            placed.append((TopicPartition(message.topic, partition), message))
        return placed

    async def write(self, request: WriteRequest) -> list[tuple[TopicPartition, int]]:
        """Queue ``request`` for the next transaction and wait until it is durable."""
        done: asyncio.Future[WriteResult] = asyncio.get_running_loop().create_future()
        self._pending.append((request, done))
        if self._flusher is None or self._flusher.done():
            # As a task, the flush starts next loop iteration: appends made in this one join it.
            self._flusher = asyncio.create_task(self._flush())
        result = await done
        if isinstance(result, EventStoreError):
            raise result
        return result

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            requests = [request for request, _ in batch]
            try:
                results = await self.run(functools.partial(self.file.write, requests))
            except Exception as exc:  # handed to every waiting appender, not lost in a task
                message = f"cannot write SQLite log {self.url}: {exc}"
                results = [EventStoreError(message) for _ in batch]
            for (_, done), result in zip(batch, results, strict=True):
                if not done.done():
                    done.set_result(result)
            self.notifier.notify()

    async def fetch(
        self, positions: Sequence[tuple[TopicPartition, int]], max_records: int
    ) -> tuple[list[Record], dict[TopicPartition, int]]:
        return await self.run(lambda: self.file.fetch(positions, max_records))

    async def end_offset(self, tp: TopicPartition) -> int:
        return await self.run(lambda: self.file.end_offset(tp))

    async def load_committed(self, group: str, tp: TopicPartition) -> int | None:
        return await self.run(lambda: self.file.load_committed(group, tp))

    async def store_committed(
        self,
        group: LocalGroup,
        offsets: Mapping[TopicPartition, int],
        messages: Sequence[Message],
        default_partitions: int,
    ) -> None:
        placed = await self.place(messages, default_partitions)
        holder = group.holder if isinstance(group, _LeasedGroup) else None
        await self.write(WriteRequest(placed, dict(offsets), group.name, holder))

    async def mark_compacted(self, topic: str) -> None:
        """Make ``topic`` a compacted one (once per topic and process)."""
        if topic not in self._compacted:
            await self.run(lambda: self.file.mark_compacted(topic))
            self._compacted.add(topic)

    async def try_lease(self, group: str, holder: str) -> bool:
        """Take or renew ``group``'s lease for ``holder``."""
        return await self.run(lambda: self.file.try_lease(group, holder, LEASE_TTL))

    async def lease_held(self, group: str) -> bool:
        """Whether a live process holds ``group``'s lease."""
        return await self.run(lambda: self.file.lease_held(group))

    async def release_lease(self, group: str, holder: str) -> None:
        """Give ``group``'s lease up."""
        await self.run(lambda: self.file.release_lease(group, holder))


class _LeasedGroup(LocalGroup):
    """A :class:`LocalGroup` that consumes only while this process holds the group's lease."""

    def __init__(self, name: str, storage: _SqliteStorage) -> None:
        super().__init__(name, storage)
        self._sqlite = storage
        self.active = False
        self.holder = uuid.uuid4().hex
        self._keeper: asyncio.Task[None] | None = None

    async def join(self, member: LocalGroupConsumer) -> None:
        """Add a member; the first one takes (or starts waiting for) the lease."""
        self.members.append(member)
        if self._keeper is None:
            self.active = await self._sqlite.try_lease(self.name, self.holder)
            self._keeper = asyncio.create_task(self._keep_lease())
        await self.rebalance()

    async def leave(self, member: LocalGroupConsumer) -> None:
        """Remove a member; the last one releases the lease so another process takes over."""
        await super().leave(member)
        if self.members or self._keeper is None:
            return
        keeper, self._keeper = self._keeper, None
        keeper.cancel()
        await asyncio.gather(keeper, return_exceptions=True)
        self.active = False
        await self._sqlite.release_lease(self.name, self.holder)

    async def _keep_lease(self) -> None:
        while True:
            await asyncio.sleep(LEASE_HEARTBEAT)
            try:
                held = await self._sqlite.try_lease(self.name, self.holder)
            except EventStoreError:
                logger.warning("cannot renew lease of group %r", self.name, exc_info=True)
                continue
            if held != self.active:
                self.active = held
                await self.rebalance()


class SqliteEventLog(EventLog):
    """An :class:`EventLog` in one SQLite file (see the module docstring for its limits).

    Args:
        url: ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``, with an optional
            ``?partitions=N`` default for topics created implicitly.
        partitions: overrides the URL's default partition count.
        poll_interval: seconds between re-reads of the file while a poll waits, for appends
            made by other processes.
    """

    atomic_appends = True  # one append is one transaction

    def __init__(
        self, url: str, *, partitions: int | None = None, poll_interval: float = 0.05
    ) -> None:
        if not url.startswith("sqlite:///"):
            raise EventStoreError(f"not a sqlite:/// URL: {url!r}", retriable=False)
        path, _, query = url.removeprefix("sqlite:///").partition("?")
        if not path:
            raise EventStoreError(f"no file path in {url!r}", retriable=False)
        self.url = url
        self.path = Path(path)
        options = parse_qs(query)
        self.default_partitions = partitions or int(
            options.get("partitions", [DEFAULT_PARTITIONS])[0]
        )
        self._storage = _SqliteStorage(str(self.path), url, poll_interval)
        self._groups: dict[str, _LeasedGroup] = {}
        self._children: weakref.WeakSet[LogReader] = weakref.WeakSet()
        self._state = "new"

    async def start(self) -> None:
        """Open the file (creating it and its tables if needed); idempotent."""
        if self._state == "stopped":
            raise EventStoreError(f"SQLite log {self.url} was stopped; open a new one")
        if self._state == "new":
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise EventStoreError(f"cannot create the folder of {self.url}: {exc}") from exc
            await self._storage.open()
            self._state = "started"

    async def stop(self) -> None:
        """Stop readers and consumers (releasing group leases), then close the file."""
        if self._state == "started":
            for child in list(self._children):
                await child.stop()
            await self._storage.close()
        self._state = "stopped"

    def _require_started(self) -> _SqliteStorage:
        if self._state != "started":
            raise EventStoreError(f"SQLite log {self.url} is {self._state}, not started")
        return self._storage

    async def ensure_topic(
        self, topic: str, partitions: int, *, keep_forever: bool = False, compact: bool = False
    ) -> int:
        """See :meth:`EventLog.ensure_topic`.

        ``compact`` is honoured as on Kafka (only each key's newest record is kept), and also
        for a topic that exists already: one created before compaction is compacted once.
        """
        storage = self._require_started()
        count = await storage.partition_count(topic, partitions)
        if compact:
            await storage.mark_compacted(topic)
        return count

    async def partition_count(self, topic: str) -> int:
        """See :meth:`EventLog.partition_count`."""
        return await self._require_started().partition_count(topic, self.default_partitions)

    async def append(self, messages: Sequence[Message]) -> list[tuple[TopicPartition, int]]:
        """See :meth:`EventLog.append`; one call is all-or-nothing (one transaction)."""
        storage = self._require_started()
        placed = await storage.place(messages, self.default_partitions)
        if not placed:
            return []
        return await storage.write(WriteRequest(placed))

    async def group_offsets(
        self, group: str, partitions: Iterable[TopicPartition]
    ) -> dict[TopicPartition, int | None]:
        """See :meth:`EventLog.group_offsets`."""
        return await group_offsets(self._require_started(), group, partitions)

    async def commit_group(self, group: str, offsets: Mapping[TopicPartition, int]) -> None:
        """See :meth:`EventLog.commit_group`."""
        await commit_group(self._require_started(), group, offsets)

    async def delete_keyed(self, ranges: Sequence[tuple[TopicPartition, str, int, int]]) -> int:
        """Delete, for each ``(tp, key, first, last)``, ``key``'s records of ``tp`` between
        two offsets (archived runs' histories), in one transaction.

        A partition's last record is kept, so offsets never go back. Returns how many went.
        """
        storage = self._require_started()
        return await storage.run(lambda: storage.file.delete_keyed(ranges))

    async def count_keyed(self, ranges: Sequence[tuple[TopicPartition, str, int, int]]) -> int:
        """How many records :meth:`delete_keyed` with ``ranges`` would leave or find: those
        of each ``(tp, key, first, last)``, whether a partition's last or not."""
        storage = self._require_started()
        return await storage.run(lambda: storage.file.count_keyed(ranges))

    async def reclaim(self, pages: int = 10_000) -> int:
        """Give up to ``pages`` free pages of the file back (incremental vacuum); how many."""
        storage = self._require_started()
        return await storage.run(lambda: storage.file.reclaim(pages))

    async def group_active(self, group: str) -> bool:
        """See :meth:`EventLog.group_active`: whether a live process holds the group's lease."""
        return await self._require_started().lease_held(group)

    def reader(self, start: Mapping[TopicPartition, int]) -> LogReader:
        """See :meth:`EventLog.reader`."""
        reader = LocalReader(self._storage, start)
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
        """See :meth:`EventLog.consumer` and the module docstring on cross-process groups."""
        if group not in self._groups:
            self._groups[group] = _LeasedGroup(group, self._storage)
        member = LocalGroupConsumer(
            self._groups[group],
            topics,
            listener=listener,
            start_from=start_from,
            default_partitions=self.default_partitions,
            log=self,
        )
        self._children.add(member)
        return member
