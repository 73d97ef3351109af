"""Readers and consumer groups for the logs that live inside one process (memory, SQLite).

Both local backends store records themselves and only differ in where (Python lists, a SQLite
file). Everything above storage is shared here, written once: :class:`LocalReader` walks
partitions from positions, :class:`LocalGroup` splits a group's partitions among its members in
this process (revoke everywhere first, then assign), and :class:`LocalGroupConsumer` is one
member. A backend implements :class:`LocalStorage`.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping, Sequence

from deerflow.errors import EventStoreError
from deerflow.log.base import (
    AssignmentListener,
    EventLog,
    GroupConsumer,
    LogReader,
    Message,
    Record,
    StartFrom,
    TopicPartition,
)

logger = logging.getLogger(__name__)


class Notifier:
    """Wakes every waiting poll when something changes (an append, a rebalance).

    Futures rather than one ``asyncio.Event`` because a named memory log may outlive the event
    loop that created it (one loop per test) and an Event binds to a single loop.
    """

    def __init__(self) -> None:
        self._waiters: set[asyncio.Future[None]] = set()

    def arm(self) -> asyncio.Future[None]:
        """Register interest *before* looking at the data, so no change can slip between."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        return waiter

    def disarm(self, waiter: asyncio.Future[None]) -> None:
        """Forget a waiter that is no longer needed."""
        self._waiters.discard(waiter)

    def notify(self) -> None:
        """Wake everyone armed so far."""
        waiters, self._waiters = self._waiters, set()
        for waiter in waiters:
            loop = waiter.get_loop()
            if loop.is_closed():
                continue
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_wake, waiter)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class LocalStorage(abc.ABC):
    """What a local backend provides to the shared reader and group code."""

    notifier: Notifier
    #: Seconds between re-reads while waiting, for writers this process is not told about
    #: (other processes); ``None`` when every writer is in-process and notifies.
    recheck_interval: float | None = None

    @abc.abstractmethod
    async def fetch(
        self, positions: Sequence[tuple[TopicPartition, int]], max_records: int
    ) -> tuple[list[Record], dict[TopicPartition, int]]:
        """Records from each position (in the order given, ``max_records`` in all) and each
        partition's end offset, both read at one instant."""

    @abc.abstractmethod
    async def end_offset(self, tp: TopicPartition) -> int:
        """The offset the next record of ``tp`` will get."""

    @abc.abstractmethod
    async def partition_count(self, topic: str, default: int) -> int:
        """Partitions of ``topic``, creating it with ``default`` partitions if missing."""

    @abc.abstractmethod
    async def load_committed(self, group: str, tp: TopicPartition) -> int | None:
        """The group's committed offset for ``tp``."""

    @abc.abstractmethod
    async def store_committed(
        self,
        group: LocalGroup,
        offsets: Mapping[TopicPartition, int],
        messages: Sequence[Message],
        default_partitions: int,
    ) -> None:
        """Append ``messages`` (may be empty) and commit ``offsets`` for ``group`` atomically.

        Topics that do not exist yet are created with ``default_partitions``.
        """


async def group_offsets(
    storage: LocalStorage, group: str, partitions: Iterable[TopicPartition]
) -> dict[TopicPartition, int | None]:
    """See :meth:`EventLog.group_offsets`."""
    return {tp: await storage.load_committed(group, tp) for tp in partitions}


async def commit_group(
    storage: LocalStorage, group: str, offsets: Mapping[TopicPartition, int]
) -> None:
    """See :meth:`EventLog.commit_group`."""
    await storage.store_committed(LocalGroup(group, storage), offsets, (), 1)


class LocalReader(LogReader):
    """Reads chosen partitions of a :class:`LocalStorage` from chosen offsets."""

    def __init__(self, storage: LocalStorage, start: Mapping[TopicPartition, int]) -> None:
        self._storage = storage
        self._positions: dict[TopicPartition, int] = dict(start)
        self._ends: dict[TopicPartition, int] = {}
        self._rotation = 0
        self._state = "new"

    async def start(self) -> None:
        """Mark the reader usable; local readers hold no connection of their own."""
        if self._state == "new":
            self._state = "started"

    async def stop(self) -> None:
        """Stop; later polls raise."""
        self._state = "stopped"

    def _require_started(self) -> None:
        if self._state != "started":
            raise EventStoreError(f"{type(self).__name__} is {self._state}, not started")

    def _fetchable(self) -> list[tuple[TopicPartition, int]]:
        return sorted(self._positions.items())

    async def poll(
        self,
        timeout: float = 0.0,
        max_records: int = 1000,
    ) -> list[Record]:
        """See :meth:`LogReader.poll`."""
        self._require_started()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            waiter = self._storage.notifier.arm()
            try:
                records = await self._fetch_once(max_records)
                remaining = deadline - loop.time()
                if records or remaining <= 0 or self._state != "started":
                    return records
                interval = self._storage.recheck_interval
                await asyncio.wait({waiter}, timeout=min(remaining, interval or remaining))
            finally:
                self._storage.notifier.disarm(waiter)

    async def _fetch_once(self, max_records: int) -> list[Record]:
        wanted = self._fetchable()
        if not wanted:
            return []
        # Rotate the starting partition so a busy partition cannot starve the others.
        self._rotation = (self._rotation + 1) % len(wanted)
        wanted = wanted[self._rotation :] + wanted[: self._rotation]
        records, ends = await self._storage.fetch(wanted, max_records)
        # A rebalance, seek or pause may have run while the fetch was awaited: keep only what
        # still follows the position the fetch started from.
        now = dict(self._fetchable())
        still = {tp for tp, offset in wanted if now.get(tp) == offset}
        accepted = [record for record in records if record.tp in still]
        for record in accepted:
            self._positions[record.tp] = record.offset + 1
        for tp in still:
            self._ends[tp] = ends[tp]
        return accepted

    def lag(self, tp: TopicPartition) -> int | None:
        """See :meth:`LogReader.lag`."""
        end = self._ends.get(tp)
        if end is None or tp not in self._positions:
            return None
        return max(0, end - self._positions[tp])

    def position(self, tp: TopicPartition) -> int:
        """See :meth:`LogReader.position`."""
        try:
            return self._positions[tp]
        except KeyError:
            raise EventStoreError(f"{tp} is not read by this reader", retriable=False) from None


class LocalGroupConsumer(LocalReader, GroupConsumer):
    """One member of a :class:`LocalGroup`."""

    def __init__(
        self,
        group: LocalGroup,
        topics: Sequence[str],
        *,
        listener: AssignmentListener | None,
        start_from: StartFrom,
        default_partitions: int,
        log: EventLog,
    ) -> None:
        super().__init__(group.storage, {})
        self._group = group
        self._topics = tuple(topics)
        self._listener = listener
        self._start_from = start_from
        self._default_partitions = default_partitions
        self._log = log
        self.subscribed: frozenset[TopicPartition] = frozenset()
        self._assigned: set[TopicPartition] = set()
        self._paused: set[TopicPartition] = set()
        # Partitions whose on_assigned has not returned yet: nothing of them is delivered.
        self._gated: set[TopicPartition] = set()
        self.told = False  # whether on_assigned ran once (a new member hears of its share)

    async def start(self) -> None:
        """Join the group; partitions are assigned before this returns (if any are free)."""
        if self._state != "new":
            return
        subscribed: set[TopicPartition] = set()
        for topic in self._topics:
            count = await self._storage.partition_count(topic, self._default_partitions)
            subscribed.update(TopicPartition(topic, p) for p in range(count))
        self.subscribed = frozenset(subscribed)
        self._state = "started"
        await self._group.join(self)

    async def stop(self) -> None:
        """Leave the group (revoking this member's partitions); idempotent."""
        if self._state == "started":
            self._state = "stopping"
            await self._group.leave(self)
        self._state = "stopped"

    def _fetchable(self) -> list[tuple[TopicPartition, int]]:
        hidden = self._paused | self._gated
        return sorted((tp, off) for tp, off in self._positions.items() if tp not in hidden)

    def assignment(self) -> frozenset[TopicPartition]:
        """See :meth:`GroupConsumer.assignment`."""
        return frozenset(self._assigned)

    def _require_assigned(self, partitions: Mapping[TopicPartition, int]) -> None:
        self._require_started_or_stopping()
        foreign = set(partitions) - self._assigned
        if foreign:
            raise EventStoreError(
                f"group {self._group.name!r}: {sorted(foreign)} not assigned to this member",
                retriable=False,
            )

    def _require_started_or_stopping(self) -> None:
        # on_revoked runs while stopping and may commit.
        if self._state not in ("started", "stopping"):
            raise EventStoreError(f"{type(self).__name__} is {self._state}, not started")

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """See :meth:`GroupConsumer.commit`."""
        self._require_assigned(offsets)
        await self._storage.store_committed(self._group, offsets, (), self._default_partitions)

    async def append_and_commit(
        self, log: EventLog, messages: Sequence[Message], offsets: Mapping[TopicPartition, int]
    ) -> None:
        """Append and commit atomically when ``log`` is this member's own log."""
        if log is not self._log:
            await super().append_and_commit(log, messages, offsets)
            return
        self._require_assigned(offsets)
        await self._storage.store_committed(
            self._group, offsets, messages, self._default_partitions
        )

    async def committed(self, tp: TopicPartition) -> int | None:
        """See :meth:`GroupConsumer.committed`."""
        return await self._storage.load_committed(self._group.name, tp)

    async def seek(self, tp: TopicPartition, offset: int) -> None:
        """See :meth:`GroupConsumer.seek`."""
        self._require_assigned({tp: offset})
        self._positions[tp] = offset

    def pause(self, partitions: frozenset[TopicPartition]) -> None:
        """See :meth:`GroupConsumer.pause`; partitions not held are ignored."""
        self._paused |= partitions & self._assigned

    def resume(self, partitions: frozenset[TopicPartition]) -> None:
        """See :meth:`GroupConsumer.resume`."""
        self._paused -= partitions
        self._storage.notifier.notify()

    async def _revoke(self, lost: frozenset[TopicPartition]) -> None:
        # Still assigned while the listener runs, so it can commit them.
        await _call_listener(self._listener, "on_revoked", lost)
        self._assigned -= lost
        self._paused -= lost
        for tp in lost:
            self._positions.pop(tp, None)
            self._ends.pop(tp, None)

    async def _assign(self, gained: frozenset[TopicPartition]) -> None:
        self.told = True
        positions = {tp: await self._initial_position(tp) for tp in gained}
        self._assigned |= gained
        self._gated |= gained
        self._positions.update(positions)
        try:
            await _call_listener(self._listener, "on_assigned", gained)
        finally:
            self._gated -= gained

    async def _initial_position(self, tp: TopicPartition) -> int:
        committed = await self._storage.load_committed(self._group.name, tp)
        if committed is not None:
            return committed
        return 0 if self._start_from == "earliest" else await self._storage.end_offset(tp)


async def _call_listener(
    listener: AssignmentListener | None, hook: str, partitions: frozenset[TopicPartition]
) -> None:
    if listener is None:
        return
    try:
        await getattr(listener, hook)(partitions)
    except Exception:
        # As in Kafka clients: a failing listener must not leave the group half-rebalanced.
        logger.exception("assignment listener %s(%s) failed", hook, sorted(partitions))


class LocalGroup:
    """The members of one consumer group inside this process, and who holds what.

    ``active`` is whether this process may consume the group at all (SQLite's cross-process
    lease); while it is false every member holds nothing.
    """

    def __init__(self, name: str, storage: LocalStorage) -> None:
        self.name = name
        self.storage = storage
        self.members: list[LocalGroupConsumer] = []
        self.active = True
        self._lock = asyncio.Lock()

    async def join(self, member: LocalGroupConsumer) -> None:
        """Add a member and rebalance."""
        self.members.append(member)
        await self.rebalance()

    async def leave(self, member: LocalGroupConsumer) -> None:
        """Remove a member (revoking all it holds) and rebalance the rest."""
        if member in self.members:
            self.members.remove(member)
        await self.rebalance(leaving=member)

    async def rebalance(self, leaving: LocalGroupConsumer | None = None) -> None:
        """Revoke from every member what it loses, then assign what each gains."""
        async with self._lock:
            # Members joining or leaving meanwhile wait for the lock and rebalance again.
            members = list(self.members)
            target = self._plan(members)
            for member in [*members, *([leaving] if leaving else [])]:
                lost = member.assignment() - target.get(member, frozenset())
                if lost:
                    await member._revoke(lost)
            for member in members:
                gained = target[member] - member.assignment()
                if gained or not member.told:  # a new member hears even of an empty share
                    await member._assign(gained)
        self.storage.notifier.notify()

    def _plan(
        self, members: list[LocalGroupConsumer]
    ) -> dict[LocalGroupConsumer, frozenset[TopicPartition]]:
        """Round-robin over the sorted partitions, each to the next member subscribed to it."""
        plan: dict[LocalGroupConsumer, set[TopicPartition]] = {m: set() for m in members}
        if self.active:
            every = sorted({tp for member in members for tp in member.subscribed})
            for turn, tp in enumerate(every):
                takers = [m for m in members if tp in m.subscribed]
                plan[takers[turn % len(takers)]].add(tp)
        return {member: frozenset(tps) for member, tps in plan.items()}
