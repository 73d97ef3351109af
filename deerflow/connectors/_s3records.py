"""S3 event records: parsing, matching and identity. Pure functions, no I/O.

Handles the standard S3 notification body (``{"Records": [...]}``), the same wrapped in an SNS
envelope, the ``s3:TestEvent`` S3 sends when a notification is configured, and S3's events
delivered through EventBridge (``{"source": "aws.s3", "detail-type": "Object Created",
"detail": {...}}``), which are turned into a record of the notification's shape, so one
object event has one identity whichever way it came. Keys arrive URL-encoded (``+`` for
spaces; moto also encodes ``/``), so they are decoded with ``unquote_plus``; EventBridge sends
them plain.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus, unquote_plus

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
    if data.get("source") == "aws.s3" and "detail-type" in data:
        return ParsedBody([from_eventbridge(data)])
    records = data.get("Records")
    if not isinstance(records, list):
        raise NotAnS3EventError("message has no 'Records' list")
    return ParsedBody([r for r in records if isinstance(r, dict)])


#: EventBridge's ``reason`` of an "Object Created" event -> the notification's event name.
_CREATED = {
    "PutObject": "Put",
    "POST Object": "Post",
    "CopyObject": "Copy",
    "CompleteMultipartUpload": "CompleteMultipartUpload",
}


def _eventbridge_name(detail_type: str, detail: Mapping[str, Any]) -> str:
    reason = str(detail.get("reason", ""))
    if detail_type == "Object Created":
        return f"s3:ObjectCreated:{_CREATED.get(reason, reason or 'Put')}"
    if detail_type == "Object Deleted":
        marker = detail.get("deletion-type") == "Delete Marker Created"
        kind = "LifecycleExpiration" if reason == "Lifecycle Expiration" else "ObjectRemoved"
        return f"s3:{kind}:{'DeleteMarkerCreated' if marker else 'Delete'}"
    return "s3:" + detail_type.replace(" ", "")  # e.g. s3:ObjectRestoreCompleted


def _bucket_and_object(
    section: Any, what: str, named: str, kind: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``bucket`` and ``object`` parts of ``section``, else why they are not there."""
    if not isinstance(section, dict):
        raise NotAnS3EventError(f"{what} has no {named}")
    bucket, obj = section.get("bucket"), section.get("object")
    if not isinstance(bucket, dict) or not isinstance(obj, dict):
        raise NotAnS3EventError(f"{what} has no 'bucket' or 'object' {kind}")
    return bucket, obj


def from_eventbridge(event: Mapping[str, Any]) -> dict[str, Any]:
    """An S3 event as EventBridge delivers it, as a notification record (``eventbridge``
    holds the event as received).

    Raises:
        NotAnS3EventError: the event has no ``detail`` with a bucket and an object.
    """
    detail = event.get("detail")
    bucket, obj = _bucket_and_object(detail, "EventBridge event", "'detail'", "detail")
    assert isinstance(detail, dict)
    key = obj.get("key")
    return {
        "eventSource": "aws:s3",
        "eventName": _eventbridge_name(str(event.get("detail-type")), detail),
        "eventTime": event.get("time"),
        "awsRegion": event.get("region"),
        "s3": {
            "bucket": {"name": bucket.get("name")},
            "object": {
                # Encoded as S3's own records are, so both shapes decode alike.
                "key": quote_plus(key, safe="/") if isinstance(key, str) else key,
                "size": obj.get("size"),
                "eTag": obj.get("etag"),
                "versionId": obj.get("version-id"),
                "sequencer": obj.get("sequencer"),
            },
        },
        "eventbridge": dict(event),
    }


def event_name(record: Mapping[str, Any]) -> str:
    """The record's event name with the ``s3:`` prefix the trigger patterns use."""
    name = str(record.get("eventName", ""))
    return name if name.startswith("s3:") else f"s3:{name}"


def to_event(record: Mapping[str, Any], trigger_name: str, received_at: float) -> S3ObjectEvent:
    """The trigger event for one S3 record.

    Raises:
        NotAnS3EventError: the record lacks the bucket or the key, or a field has a wrong type
            (the record comes from a queue anyone may write to).
    """
    bucket, obj = _bucket_and_object(record.get("s3"), "record", "'s3' section", "section")
    name, key = bucket.get("name"), obj.get("key")
    if not isinstance(name, str) or not name or not isinstance(key, str):
        raise NotAnS3EventError("record has no bucket name or object key")
    return S3ObjectEvent(
        trigger=trigger_name,
        received_at=received_at,
        bucket=name,
        key=unquote_plus(key),
        event_name=event_name(record),
        size=_size(obj.get("size")),
        etag=_unquoted(_text(obj, "eTag")),
        version_id=_text(obj, "versionId"),
        sequencer=_text(obj, "sequencer"),
        event_time=_text(record, "eventTime"),
        raw=dict(record),
    )


def _text(section: Mapping[str, Any], name: str) -> str | None:
    value = section.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise NotAnS3EventError(f"record field {name!r} is not text")


def _size(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return None


def _unquoted(etag: str | None) -> str | None:
    return etag.strip('"') or None if etag else None


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
    marker = (
        f"v:{event.version_id}"
        if event.version_id
        else f"s:{event.sequencer}"
        if event.sequencer
        else f"e:{event.etag}"
        if event.etag
        else f"t:{event.event_time}"
    )
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
