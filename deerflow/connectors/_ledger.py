"""Small durable state for connectors, kept as records on a deerflow topic.

Connectors need a little state that must survive restarts and be shared by processes: the
newest S3 sequencer seen per object key, the cursor of a polled bucket. Rather than a second
store, it lives in the event log itself, one JSON record per change, keyed by the state's key;
the latest record of a key (or the greatest, with a ``merge``) is its value. A ledger reads its
topic at start and picks up other processes' writes with :meth:`Ledger.refresh`. Memory is
bounded: only the ``max_keys`` most recently used keys are kept (older ones are forgotten, so
staleness checks for them are skipped, never wrong the other way).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import deerflow._codec as _codec
from deerflow.log.base import EventLog, LogReader, Message, Record, TopicPartition

log = logging.getLogger("deerflow.connectors.ledger")

Merge = Callable[[Any, Any], Any]


def last_wins(old: Any, new: Any) -> Any:
    """The default merge: the newer record replaces the value."""
    return new


def greatest(old: Any, new: Any) -> Any:
    """Keep the greater value (for monotonic markers such as S3 sequencers)."""
    return new if old is None or new > old else old


class Ledger:
    """Latest value per key, durable on ``topic`` of ``log``.

    Args:
        log: the event log (the engine's).
        topic: the topic holding the records.
        merge: how a record combines with the value already known.
        max_keys: keys kept in memory.
        partitions: partitions of the topic when it is created.
    """

    def __init__(
        self,
        log_: EventLog,
        topic: str,
        *,
        merge: Merge = last_wins,
        max_keys: int = 100_000,
        partitions: int = 4,
    ) -> None:
        self.topic = topic
        self._log = log_
        self._merge = merge
        self._max_keys = max_keys
        self._partitions = partitions
        self._values: OrderedDict[str, Any] = OrderedDict()
        self._reader: LogReader | None = None
        self._starting: asyncio.Future[Any] | None = None

    async def start(self) -> None:
        """Read the topic to its end, then follow it; idempotent."""
        if self._reader is not None:
            return
        count = await self._log.ensure_topic(self.topic, self._partitions)
        ends: dict[TopicPartition, int] = {}
        for p in range(count):
            tp = TopicPartition(self.topic, p)
            records = await self._log.read_partition(tp, 0)
            for record in records:
                self._apply(record)
            ends[tp] = records[-1].offset + 1 if records else 0
        self._reader = self._log.reader(ends)
        await self._reader.start()

    async def started_by(self, add_service: Callable[[Ledger], Awaitable[Any]]) -> None:
        """Started once, by ``add_service`` (an engine's: stopped with it), however many
        callers wait for it; after a failed start the next call tries again."""
        if self._starting is None:
            self._starting = asyncio.ensure_future(add_service(self))
        starting = self._starting
        try:
            await asyncio.shield(starting)
        except Exception:
            self._starting = None
            raise

    async def stop(self) -> None:
        """Stop following; idempotent."""
        reader, self._reader = self._reader, None
        if reader is not None:
            await reader.stop()

    async def refresh(self) -> None:
        """Apply records other processes appended since the last look (best effort)."""
        if self._reader is None:
            return
        for record in await self._reader.poll(timeout=0.0, max_records=10_000):
            self._apply(record)

    def get(self, key: str) -> Any:
        """The value of ``key``, or ``None``."""
        return self._values.get(key)

    async def put(self, values: Mapping[str, Any]) -> None:
        """Durably record new values (merged with the known ones)."""
        if not values:
            return
        await self._log.append(
            [
                Message(topic=self.topic, key=key, value=_codec.dumps({"key": key, "value": value}))
                for key, value in values.items()
            ]
        )
        for key, value in values.items():
            self._set(key, value)

    def _apply(self, record: Record) -> None:
        try:
            data = _codec.loads(record.value)
            self._set(str(data["key"]), data["value"])
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring an unreadable record at %s:%d", record.tp, record.offset)

    def _set(self, key: str, value: Any) -> None:
        self._values[key] = self._merge(self._values.get(key), value)
        self._values.move_to_end(key)
        while len(self._values) > self._max_keys:
            self._values.popitem(last=False)
