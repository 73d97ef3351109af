"""S3 event records: parsing, matching and identity. Pure functions, no I/O.

Handles the standard S3 notification body (``{"Records": [...]}``), the same wrapped in an SNS
envelope, and the ``s3:TestEvent`` S3 sends when a notification is configured. Keys arrive
URL-encoded (``+`` for spaces; moto also encodes ``/``), so they are decoded with
``unquote_plus``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

import orjson

from deerflow.events import S3Event, S3ObjectEvent


class NotAnS3EventError(ValueError):
    """A queue message that is not an S3 event notification."""


@dataclass(frozen=True, slots=True)
class ParsedBody:
    """A queue message's S3 records; ``test`` for the ``s3:TestEvent`` sent at setup."""

    records: list[dict[str, Any]]
    test: bool = False


def parse_body(body: str | bytes) -> ParsedBody:
    """The S3 records of an SQS message body (raw S3 or SNS-wrapped).

    Raises:
        NotAnS3EventError: the body is not JSON or carries no S3 records.
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise NotAnS3EventError(f"message body is not JSON: {exc}") from exc
    if isinstance(data, dict) and data.get("Type") == "Notification" and "Message" in data:
        return parse_body(str(data["Message"]))  # SNS fan-out wraps the S3 body
    if not isinstance(data, dict):
        raise NotAnS3EventError("message body is not a JSON object")
    if data.get("Event") == "s3:TestEvent":
        return ParsedBody([], test=True)
    records = data.get("Records")
    if not isinstance(records, list):
        raise NotAnS3EventError("message has no 'Records' list")
    return ParsedBody([r for r in records if isinstance(r, dict)])


def event_name(record: Mapping[str, Any]) -> str:
    """The record's event name with the ``s3:`` prefix the trigger patterns use."""
    name = str(record.get("eventName", ""))
    return name if name.startswith("s3:") else f"s3:{name}"


def to_event(record: Mapping[str, Any], trigger_name: str, received_at: float) -> S3ObjectEvent:
    """The trigger event for one S3 record.

    Raises:
        NotAnS3EventError: the record lacks the bucket or the key.
    """
    s3 = record.get("s3")
    if not isinstance(s3, dict):
        raise NotAnS3EventError("record has no 's3' section")
    bucket = (s3.get("bucket") or {}).get("name")
    obj = s3.get("object") or {}
    if not bucket or "key" not in obj:
        raise NotAnS3EventError("record has no bucket name or object key")
    size = obj.get("size")
    return S3ObjectEvent(
        trigger=trigger_name, received_at=received_at, bucket=str(bucket),
        key=unquote_plus(str(obj["key"])), event_name=event_name(record),
        size=int(size) if isinstance(size, int | str) and str(size).isdigit() else None,
        etag=_unquoted(obj.get("eTag")), version_id=obj.get("versionId") or None,
        sequencer=obj.get("sequencer") or None, event_time=record.get("eventTime"),
        raw=dict(record),
    )


def _unquoted(etag: Any) -> str | None:
    return str(etag).strip('"') or None if etag else None


def matches(trigger: S3Event, event: S3ObjectEvent) -> bool:
    """Whether ``event`` is one ``trigger`` asks for: bucket, event pattern, prefix, suffix."""
    return (
        event.bucket == trigger.bucket
        and any(fnmatch.fnmatchcase(event.event_name, p) for p in trigger.events)
        and event.key.startswith(trigger.key_prefix)
        and event.key.endswith(trigger.key_suffix)
    )


def identity(event: S3ObjectEvent) -> str:
    """What makes an object event unique: bucket + key + the most specific version marker.

    ``versionId`` names one write in a versioned bucket; else the ``sequencer`` orders the
    writes of one key; else the ETag (content) is all there is (moto, S3-compatible stores).
    The event name is part of it, so a delete is not mistaken for the create before it.
    """
    marker = (f"v:{event.version_id}" if event.version_id
              else f"s:{event.sequencer}" if event.sequencer
              else f"e:{event.etag}" if event.etag
              else f"t:{event.event_time}")
    kind = event.event_name.split(":")[1] if event.event_name.count(":") >= 1 else ""
    return f"{event.bucket}\x00{event.key}\x00{kind}\x00{marker}"


def sequencer_value(sequencer: str) -> str:
    """A sequencer made comparable: AWS says compare after right-padding with zeros."""
    return sequencer.upper().ljust(64, "0")


def newest_by_key(events: Iterable[S3ObjectEvent]) -> dict[tuple[str, str], str]:
    """Per (bucket, key), the greatest comparable sequencer among ``events`` that have one."""
    newest: dict[tuple[str, str], str] = {}
    for event in events:
        if event.sequencer:
            value = sequencer_value(event.sequencer)
            where = (event.bucket, event.key)
            if value > newest.get(where, ""):
                newest[where] = value
    return newest
