"""An event log that misbehaves on purpose, wrapped around a real one.

:class:`FaultyLog` performs every append on the real log and then, for a chosen share of them,
raises a timeout anyway: the write happened but the caller cannot know (an *ambiguous* write,
what a lost broker acknowledgement looks like). It can also delay appends (a slow store) and
refuse to open its first few readers (a broker unreachable for a moment). Readers and
consumers are otherwise the real log's.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable, Mapping, Sequence

from deerflow.errors import EventStoreError
from deerflow.eventstore.base import (
    AssignmentListener,
    EventLog,
    GroupConsumer,
    LogReader,
    Message,
    StartFrom,
    TopicPartition,
)


class FaultyLog(EventLog):
    """A real log whose appends sometimes time out *after* writing, or are slow.

    Args:
        inner: the real log.
        ambiguous: the share of appends that raise after being written.
        delay: seconds each append waits before writing.
        rng: the random source (seeded by the test, so a failure replays).
        failing_reads: how many of the first :meth:`reader` calls raise ``EventStoreError``.
    """

    def __init__(
        self,
        inner: EventLog,
        *,
        ambiguous: float = 0.0,
        delay: float = 0.0,
        rng: random.Random | None = None,
        failing_reads: int = 0,
    ) -> None:
        self.inner = inner
        self.url = inner.url
        self.ambiguous = ambiguous
        self.delay = delay
        self.rng = rng or random.Random(0)
        self.appends = 0
        self.failed = 0
        self.failing_reads = failing_reads

    async def start(self) -> None:
        """Start the real log."""
        await self.inner.start()

    async def stop(self) -> None:
        """Stop the real log."""
        await self.inner.stop()

    async def ensure_topic(
        self, topic: str, partitions: int, *, keep_forever: bool = False, compact: bool = False
    ) -> int:
        """The real log's answer."""
        return await self.inner.ensure_topic(
            topic, partitions, keep_forever=keep_forever, compact=compact
        )

    async def group_offsets(
        self, group: str, partitions: Iterable[TopicPartition]
    ) -> dict[TopicPartition, int | None]:
        """The real log's answer."""
        return await self.inner.group_offsets(group, partitions)

    async def commit_group(self, group: str, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit on the real log."""
        await self.inner.commit_group(group, offsets)

    async def partition_count(self, topic: str) -> int:
        """The real log's answer."""
        return await self.inner.partition_count(topic)

    async def append(self, messages: Sequence[Message]) -> list[tuple[TopicPartition, int]]:
        """Append for real; then, now and then, claim it timed out."""
        if self.delay:
            await asyncio.sleep(self.delay)
        placed = await self.inner.append(messages)
        self.appends += 1
        if self.rng.random() < self.ambiguous:
            self.failed += 1
            raise EventStoreError(
                "append timed out (ambiguous: it may have been written)", retriable=True
            )
        return placed

    def reader(self, start: Mapping[TopicPartition, int]) -> LogReader:
        """The real log's reader (unless this is one of the first ``failing_reads`` calls)."""
        if self.failing_reads > 0:
            self.failing_reads -= 1
            raise EventStoreError("cannot reach the log (injected)", retriable=True)
        return self.inner.reader(start)

    def consumer(
        self,
        group: str,
        topics: Sequence[str],
        *,
        listener: AssignmentListener | None = None,
        start_from: StartFrom = "earliest",
    ) -> GroupConsumer:
        """A member of the real log's group."""
        return self.inner.consumer(group, topics, listener=listener, start_from=start_from)
