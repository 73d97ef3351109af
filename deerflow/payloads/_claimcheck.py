"""Claim checks: a value above a threshold goes to a blob store and the log keeps a reference.

The reference names the store, the blob's key, its size and its SHA-256, so a reader restores
exactly the bytes written or says why it cannot. Blob keys are ``topic/record-key/sha256``
(:func:`blob_prefix`): a redelivered append writes the same blob again (idempotent), and the
blobs of one record key (a run's history, one task of a run on the task queue) share a
directory no other key's blobs are in, so they can be deleted together.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from typing import Any

import deerflow._codec as _codec
from deerflow.errors import PayloadUnreadable
from deerflow.log.base import Message, Record
from deerflow.payloads._blobs import BlobStore
from deerflow.payloads.base import PayloadCodec

__all__ = ["DEFAULT_THRESHOLD", "HEADER", "BlobRef", "ClaimCheck", "blob_prefix"]

#: The record header a claim check sets on the records whose value is a reference.
HEADER = "deerflow-payload"
_MARK = b"claim-check"
#: Values above this many bytes go to the blob store: well under Kafka's 1 MB record limit,
#: so a record stays small whatever a task returns.
DEFAULT_THRESHOLD = 256 * 1024
_UNSAFE = re.compile(r"[^A-Za-z0-9.-]|^\.")
#: A key segment longer than this is named by its digest instead.
_SEGMENT = 200
#: What a reference keeps of the value's own small fields (strings up to this many characters,
#: at most this many fields): enough to name the run and task a lost value belonged to.
_FIELD_CHARS = 200
_FIELDS = 16


@dataclass(frozen=True, slots=True)
class BlobRef:
    """What a record holds in place of a large value."""

    store: str
    key: str
    size: int
    sha256: str
    #: the value's small top-level fields (a JSON object's ids, type, attempt, ...)
    fields: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> bytes:
        """The reference as the record's JSON value."""
        body = {"store": self.store, "key": self.key, "size": self.size, "sha256": self.sha256}
        return _codec.dumps({**body, "fields": self.fields} if self.fields else body)

    @classmethod
    def decode(cls, data: bytes) -> BlobRef:
        """Parse a record value written by :meth:`encode`; ``ValueError`` if it is not one."""
        try:
            body = _codec.loads(data)
            fields = body.get("fields") or {}
            if not isinstance(fields, dict):
                raise TypeError("fields is not an object")
            return cls(
                str(body["store"]), str(body["key"]), int(body["size"]), str(body["sha256"]), fields
            )
        except (TypeError, KeyError, ValueError, AttributeError) as exc:
            raise ValueError(f"not a blob reference: {exc}") from None


def small_fields(value: bytes) -> dict[str, Any]:
    """The top-level fields of a JSON object that are short scalars; ``{}`` for anything else."""
    if not value.startswith(b"{"):
        return {}
    try:
        body = _codec.loads(value)
    except ValueError:
        return {}
    small = {
        name: item
        for name, item in body.items()
        if item is None
        or isinstance(item, bool | int | float)
        or (isinstance(item, str) and len(item) <= _FIELD_CHARS)
    }
    return dict(list(small.items())[:_FIELDS])


def _segment(name: str) -> str:
    # One-to-one: every byte but [A-Za-z0-9.-] (and a leading dot) becomes _xx, so "_" only
    # starts an escape, and "__" + digest (never an escape) names what is too long.
    escaped = _UNSAFE.sub(lambda m: "".join(f"_{b:02x}" for b in m[0].encode()), name)
    if len(escaped) <= _SEGMENT and escaped:
        return escaped
    return "__" + hashlib.sha256(name.encode()).hexdigest()


def blob_prefix(topic: str, key: str | None) -> str:
    """The directory (``topic/record-key/``) of the blobs of ``topic``'s records with ``key``.

    Each topic and record key is one escaped path segment, one to one, so the directory of a
    key holds its blobs alone (run ``a`` and run ``a/b``, or ``a_b``, never share one).
    """
    return f"{_segment(topic)}/{_segment(key or '')}/"


def reference(record: Record) -> BlobRef | None:
    """The blob reference ``record`` holds, or ``None`` when it holds its value itself."""
    if (HEADER, _MARK) not in record.headers:
        return None
    return BlobRef.decode(record.value)


def describe(record: Record) -> str:
    """A record as an error names it: its topic, position and key (the run, or run/task)."""
    return f"{record.topic} record {record.partition}@{record.offset} (key {record.key!r})"


class ClaimCheck(PayloadCodec):
    """Keeps values larger than ``threshold`` bytes in ``store``; the record holds a
    :class:`BlobRef`.

    Args:
        store: where the large values go.
        threshold: values of at most this many bytes stay in the record.
    """

    def __init__(self, store: BlobStore, threshold: int = DEFAULT_THRESHOLD) -> None:
        if threshold < 1024:
            raise ValueError(f"claim-check threshold {threshold} is below 1024 bytes")
        self.store = store
        self.threshold = threshold

    async def start(self) -> None:
        """Open the blob store."""
        await self.store.start()

    async def stop(self) -> None:
        """Close the blob store."""
        await self.store.stop()

    async def encode(self, message: Message) -> Message:
        """Store a large value and put its reference in the record."""
        value = message.value
        if len(value) <= self.threshold:
            return message
        digest = hashlib.sha256(value).hexdigest()
        key = blob_prefix(message.topic, message.key) + digest
        await self.store.put(key, value)
        ref = BlobRef(self.store.url, key, len(value), digest, small_fields(value))
        return replace(message, value=ref.encode(), headers=(*message.headers, (HEADER, _MARK)))

    async def decode(self, record: Record) -> Record:
        """Fetch the value a reference names and check its size and digest."""
        try:
            ref = reference(record)
        except ValueError as exc:
            raise PayloadUnreadable(f"{describe(record)}: {exc}", retriable=False) from None
        if ref is None:
            return record
        try:
            data = await self.store.get(ref.key)
        except PayloadUnreadable as exc:
            raise PayloadUnreadable(
                f"{describe(record)}: {exc}", retriable=exc.retriable, known=ref.fields
            ) from exc
        digest = hashlib.sha256(data).hexdigest()
        if len(data) != ref.size or digest != ref.sha256:
            raise PayloadUnreadable(
                f"{describe(record)}: blob {ref.key!r} of {ref.store} is not the value the "
                f"record refers to (size {len(data)}, sha256 {digest[:12]}...; expected size "
                f"{ref.size}, sha256 {ref.sha256[:12]}...)",
                retriable=False,
                known=ref.fields,
            )
        headers = tuple(pair for pair in record.headers if pair != (HEADER, _MARK))
        return replace(record, value=data, headers=headers)
