"""``PayloadLog``: an event log whose record values pass through a payload codec.

It wraps any :class:`~deerflow.log.base.EventLog`: appends are encoded before they reach the
inner log, and records are decoded before a reader or a consumer returns them, so everything
above the log sees values as they were written.

A record that cannot be decoded for now (its blob store is unreachable) is not skipped: the poll
that meets it returns the records before it and the next poll raises
:class:`~deerflow.errors.PayloadUnreadable`, naming the record, until it can be read. A record
that can never be decoded (its blob is missing or is not the bytes the reference names) is
returned in its place as ``{"payload_error": ..., "known": {...}}`` (the error, and the
record's small fields the reference kept) with the :data:`ERROR_HEADER` header: no reader takes
it for data; a worker fails the attempt it was for, the orchestrator and the run index log it
and pass over it, instead of stopping at it forever.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import deerflow._codec as _codec
from deerflow.errors import PayloadTooLarge, PayloadUnreadable
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
from deerflow.payloads._limit import ReferenceLimit, beyond_limit, size_text
from deerflow.payloads.base import PayloadCodec

__all__ = [
    "DEFAULT_LIMIT",
    "ERROR_HEADER",
    "PayloadLog",
    "lost_fields",
    "payload_error",
    "stored_in",
]

#: The largest payload a :class:`PayloadLog` takes (before encoding), by default.
DEFAULT_LIMIT = 64 * 1024 * 1024
#: The most bytes of decoded values one poll returns (at least one record): a batch of
#: references must not become gigabytes in memory at once; the rest waits for the next poll.
POLL_BYTES = 128 * 1024 * 1024
#: The header of a record returned in place of one that can never be decoded.
ERROR_HEADER = "deerflow-payload-error"


def payload_error(record: Record) -> str | None:
    """Why ``record`` could not be decoded, when it stands for one that could not be."""
    for name, value in record.headers:
        if name == ERROR_HEADER:
            return value.decode("utf-8", "replace")
    return None


def lost_fields(record: Record) -> dict[str, Any]:
    """What a record that could not be decoded said of itself (see
    :attr:`PayloadUnreadable.known`); ``{}`` for any other record."""
    if payload_error(record) is None:
        return {}
    try:
        known = _codec.loads(record.value).get("known")
    except (ValueError, AttributeError):
        return {}
    return known if isinstance(known, dict) else {}


def _unreadable(record: Record, error: PayloadUnreadable) -> Record:
    # A JSON object no reader takes for data (no ``type``), holding the error and what the
    # record said of itself, so a worker can fail the attempt it was for.
    value = _codec.dumps({"payload_error": str(error), "known": error.known})
    headers = (*record.headers, (ERROR_HEADER, str(error).encode()))
    return replace(record, value=value, headers=headers)


class PayloadLog(EventLog):
    """``inner`` with every record value passed through ``codec``.

    Args:
        inner: the log that keeps the encoded records.
        codec: encodes appends and decodes what is read.
        limit: the largest value accepted, in bytes (:class:`PayloadTooLarge` above it).
    """

    def __init__(self, inner: EventLog, codec: PayloadCodec, *, limit: int = DEFAULT_LIMIT):
        self.inner = inner
        self.codec = codec
        self.url = inner.url
        self.limit = limit
        self.max_value_bytes: int | None = ReferenceLimit(limit)
        # One append is as all-or-nothing as the inner log's: encoding happens before it.
        self.atomic_appends = inner.atomic_appends

    def __getattr__(self, name: str) -> Any:
        # What a backend offers besides the EventLog interface (a SQLite file's path, Kafka's
        # settings) stays reachable through the wrapper.
        return getattr(self.inner, name)

    async def start(self) -> None:
        """Start the codec, then the inner log."""
        await self.codec.start()
        await self.inner.start()

    async def stop(self) -> None:
        """Stop the inner log, then the codec."""
        await self.inner.stop()
        await self.codec.stop()

    async def ensure_topic(
        self, topic: str, partitions: int, *, keep_forever: bool = False, compact: bool = False
    ) -> int:
        """As the inner log."""
        return await self.inner.ensure_topic(
            topic, partitions, keep_forever=keep_forever, compact=compact
        )

    async def partition_count(self, topic: str) -> int:
        """As the inner log."""
        return await self.inner.partition_count(topic)

    async def encode(self, messages: Sequence[Message]) -> list[Message]:
        """``messages`` as the inner log keeps them.

        Raises:
            PayloadTooLarge: a value is larger than :attr:`max_value_bytes`.
        """
        encoded = []
        for message in messages:
            if len(message.value) > self.limit:
                raise PayloadTooLarge(
                    f"a {message.topic} record (key {message.key!r}) of "
                    f"{size_text(len(message.value))} is {beyond_limit(ReferenceLimit(self.limit))}"
                )
            encoded.append(await self.codec.encode(message))
        return encoded

    async def append(self, messages: Sequence[Message]) -> list[tuple[TopicPartition, int]]:
        """Encode ``messages``, then append them to the inner log."""
        return await self.inner.append(await self.encode(messages))

    def written(self, tp: TopicPartition) -> int | None:
        """As the inner log."""
        return self.inner.written(tp)

    def reader(self, start: Mapping[TopicPartition, int]) -> LogReader:
        """A reader of the inner log that decodes what it returns."""
        return DecodingReader(self.inner.reader(start), self.codec)

    def consumer(
        self,
        group: str,
        topics: Sequence[str],
        *,
        listener: AssignmentListener | None = None,
        start_from: StartFrom = "earliest",
    ) -> GroupConsumer:
        """A group member of the inner log that decodes what it returns."""
        wrapper = DecodingConsumer(self, listener)
        wrapper.bind(
            self.inner.consumer(group, topics, listener=wrapper.listener, start_from=start_from)
        )
        return wrapper

    async def group_active(self, group: str) -> bool | None:
        """As the inner log."""
        return await self.inner.group_active(group)

    async def group_offsets(
        self, group: str, partitions: Iterable[TopicPartition]
    ) -> dict[TopicPartition, int | None]:
        """As the inner log (offsets are not payloads)."""
        return await self.inner.group_offsets(group, partitions)

    async def commit_group(self, group: str, offsets: Mapping[TopicPartition, int]) -> None:
        """As the inner log (offsets are not payloads)."""
        await self.inner.commit_group(group, offsets)


def stored_in(log: EventLog) -> EventLog:
    """The log that keeps ``log``'s records: the inner log of a :class:`PayloadLog`, else
    ``log`` itself (for what depends on the backend: its file, deleting records)."""
    return log.inner if isinstance(log, PayloadLog) else log


class DecodingReader(LogReader):
    """A reader whose records pass through a codec; an undecodable record is kept, not lost.

    Records polled from the inner reader but not returned yet (behind an undecodable one, of a
    paused partition, beyond ``max_records`` or :data:`POLL_BYTES`) wait in a buffer of at most
    one inner poll, still encoded.
    """

    def __init__(self, inner: LogReader | None, codec: PayloadCodec) -> None:
        self._inner = inner
        self._codec = codec
        self._pending: list[Record] = []
        self._held: frozenset[TopicPartition] = frozenset()  # paused: not returned

    @property
    def inner(self) -> LogReader:
        """The reader of the inner log."""
        assert self._inner is not None, "bind() first"
        return self._inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def start(self) -> None:
        """Start the inner reader."""
        await self.inner.start()

    async def stop(self) -> None:
        """Stop the inner reader and drop what waits."""
        self._pending = []
        await self.inner.stop()

    async def poll(self, timeout: float = 0.0, max_records: int = 1000) -> list[Record]:
        """The next decoded records (see the class docstring)."""
        if not self._ready():
            fetched = await self.inner.poll(timeout=timeout, max_records=max_records)
            # Added to the buffer as it is now: a seek or revoke while the inner poll was
            # awaited replaces it (``forget``), and the inner reader returns only records that
            # follow the positions as they are after it.
            self._pending.extend(fetched)
        decoded: list[Record] = []
        kept: list[Record] = []
        failure: Exception | None = None
        size = 0
        held = self._held
        for record in self._pending:
            full = len(decoded) >= max_records or size >= POLL_BYTES
            if failure or full or (held and record.tp in held):
                kept.append(record)
                continue
            if not record.headers:
                # A codec marks what it encoded in a header (see PayloadCodec): a record of
                # none is as its producer wrote it, returned without a call per record.
                decoded.append(record)
                size += len(record.value)
                continue
            try:
                decoded.append(await self._codec.decode(record))
                size += len(decoded[-1].value)
            except PayloadUnreadable as exc:
                if exc.retriable:
                    failure = exc
                    kept.append(record)
                else:
                    decoded.append(_unreadable(record, exc))
            except Exception as exc:
                failure = exc
                kept.append(record)
        self._pending = kept
        if failure is not None and not decoded:
            raise failure
        return decoded

    def _ready(self) -> bool:
        held = self._held
        if not held:  # the usual case: no record's partition to build
            return bool(self._pending)
        return any(record.tp not in held for record in self._pending)

    def forget(self, partitions: frozenset[TopicPartition] | set[TopicPartition]) -> None:
        """Drop what waits of ``partitions`` (revoked, or moved by a seek)."""
        self._pending = [record for record in self._pending if record.tp not in partitions]

    def lag(self, tp: TopicPartition) -> int | None:
        """The inner reader's lag plus what waits here of ``tp``."""
        lag = self.inner.lag(tp)
        waiting = sum(1 for record in self._pending if record.tp == tp)
        return None if lag is None else lag + waiting

    def position(self, tp: TopicPartition) -> int:
        """The offset of the next record returned for ``tp``."""
        for record in self._pending:
            if record.tp == tp:
                return record.offset
        return self.inner.position(tp)


class DecodingConsumer(DecodingReader, GroupConsumer):
    """A group member whose records pass through the payload log's codec."""

    def __init__(self, log: PayloadLog, listener: AssignmentListener | None) -> None:
        super().__init__(None, log.codec)
        self._log = log
        self._listener = listener
        self.listener = _Forgetting(self, listener)

    def bind(self, inner: GroupConsumer) -> None:
        """Attach the inner log's member (made with :attr:`listener`)."""
        self._inner = inner
        self._group: GroupConsumer = inner

    def assignment(self) -> frozenset[TopicPartition]:
        """As the inner member."""
        return self._group.assignment()

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """As the inner member."""
        await self._group.commit(offsets)

    async def append_and_commit(
        self, log: EventLog, messages: Sequence[Message], offsets: Mapping[TopicPartition, int]
    ) -> None:
        """Encode ``messages`` and let the inner member append and commit (atomically where
        its log can)."""
        if log is not self._log:
            await super().append_and_commit(log, messages, offsets)
            return
        encoded = await self._log.encode(messages)
        await self._group.append_and_commit(self._log.inner, encoded, offsets)

    async def committed(self, tp: TopicPartition) -> int | None:
        """As the inner member."""
        return await self._group.committed(tp)

    async def seek(self, tp: TopicPartition, offset: int) -> None:
        """Move the inner member; what waited of ``tp`` is dropped."""
        self.forget({tp})
        await self._group.seek(tp, offset)

    def pause(self, partitions: frozenset[TopicPartition]) -> None:
        """Pause the inner member's partitions and hold back what waits of them."""
        self._held = self._held | partitions
        self._group.pause(partitions)

    def resume(self, partitions: frozenset[TopicPartition]) -> None:
        """Undo :meth:`pause`."""
        self._held = self._held - partitions
        self._group.resume(partitions)


class _Forgetting:
    """The listener given to the inner member: drops what waits of revoked partitions."""

    def __init__(self, reader: DecodingReader, listener: AssignmentListener | None) -> None:
        self._reader = reader
        self._listener = listener

    async def on_assigned(self, partitions: frozenset[TopicPartition]) -> None:
        if self._listener is not None:
            await self._listener.on_assigned(partitions)

    async def on_revoked(self, partitions: frozenset[TopicPartition]) -> None:
        self._reader.forget(partitions)
        if self._listener is not None:
            await self._listener.on_revoked(partitions)
