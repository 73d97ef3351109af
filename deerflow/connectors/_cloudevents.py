"""CloudEvents 1.0 in: HTTP (binary, structured and batch modes) and Kafka (binary, structured).

Read with the ``cloudevents`` SDK's protocol bindings and turned into deerflow's
:class:`~deerflow.events.CloudEvent` model. A request or record is a CloudEvent when the
binding says so: a ``ce-specversion`` header (HTTP binary mode; ``ce_specversion`` on Kafka),
or the content type ``application/cloudevents+json`` (structured mode) or
``application/cloudevents-batch+json`` (HTTP batch mode: a JSON array, one event each).
Anything else is not a CloudEvent and is read as before. ``id``, ``source`` and ``type`` are
required: an event without them is refused, never given an id of our making.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings import http, kafka
from cloudevents.core.exceptions import BaseCloudEventException
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent as SdkCloudEvent

from deerflow.events import CloudEvent

__all__ = ["BATCH", "MAX_BATCH", "STRUCTURED", "from_http", "from_kafka", "identity"]

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
#: The most events one batch-mode request may carry (each becomes a run request in memory).
MAX_BATCH = 1000
_REQUIRED = ("id", "source", "type")
_KNOWN = frozenset(CloudEvent.model_fields) - {"data", "extensions"}
_FORMAT = JSONFormat()


class _Received:
    """An event factory for the SDK that keeps the attributes as received.

    The SDK's event fills in a missing ``id`` (a random one) and ``time`` (now); an incoming
    event must not get either, or its identity would change with every delivery.
    """

    def __init__(self) -> None:
        self.attributes: dict[str, Any] = {}

    def __call__(self, attributes: dict[str, Any], data: Any) -> BaseCloudEvent:
        missing = [name for name in _REQUIRED if not attributes.get(name)]
        if missing:
            raise ValueError(f"CloudEvent without {', '.join(missing)}")
        if attributes.get("specversion", "1.0") != "1.0":
            raise ValueError(f"CloudEvents specversion {attributes['specversion']!r}; use 1.0")
        self.attributes = dict(attributes)
        return SdkCloudEvent(dict(attributes), data)


def _text(value: Any) -> Any:
    if isinstance(value, datetime):
        text = value.astimezone(UTC).isoformat() if value.tzinfo else value.isoformat()
        return text.replace("+00:00", "Z")
    return value


def _model(event: BaseCloudEvent, received: Mapping[str, Any]) -> CloudEvent:
    data: Any = event.get_data()
    if isinstance(data, bytes | bytearray):
        data = base64.b64encode(data).decode()  # storable as JSON; tasks decode it
    attributes = {name: _text(value) for name, value in received.items()}
    return CloudEvent(
        **{name: str(value) for name, value in attributes.items() if name in _KNOWN},
        data=data,
        extensions={k: v for k, v in attributes.items() if k not in _KNOWN},
    )


def _read(parse: Any, *args: Any) -> CloudEvent:
    received = _Received()
    try:
        event = parse(*args, _FORMAT, received)
    except (BaseCloudEventException, ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"not a valid CloudEvent: {exc}") from None
    return _model(event, received.attributes)


def from_http(headers: Mapping[str, str], content_type: str, raw: bytes) -> list[CloudEvent] | None:
    """The CloudEvents an HTTP request carries, or ``None`` when it carries none.

    Raises:
        ValueError: the request says it is a CloudEvent but is not a valid one.
    """
    if content_type == BATCH:
        try:
            items = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"CloudEvents batch is not JSON: {exc}") from None
        if not isinstance(items, list):
            raise ValueError("CloudEvents batch is not a JSON array")
        if len(items) > MAX_BATCH:
            raise ValueError(f"CloudEvents batch of {len(items)} events; at most {MAX_BATCH}")
        return [
            _read(http.from_structured, http.HTTPMessage({}, orjson.dumps(item))) for item in items
        ]
    if any(name.lower() == "ce-specversion" for name in headers):
        message = http.HTTPMessage(dict(headers.items()), raw)
        return [_read(http.from_binary, message)]
    if content_type == STRUCTURED:
        return [_read(http.from_structured, http.HTTPMessage({}, raw))]
    return None


def from_kafka(
    headers: Iterable[tuple[str, bytes]], key: str | None, value: bytes
) -> CloudEvent | None:
    """The CloudEvent a Kafka record carries, or ``None`` when it carries none.

    Raises:
        ValueError: the record says it is a CloudEvent but is not a valid one.
    """
    named = {name: data for name, data in headers}
    lowered = {name.lower(): data for name, data in named.items()}
    if "ce_specversion" in lowered:
        return _read(kafka.from_binary, kafka.KafkaMessage(named, key, value))
    content_type = lowered.get("content-type", b"").split(b";")[0].strip().decode(errors="replace")
    if content_type == STRUCTURED:
        return _read(kafka.from_structured, kafka.KafkaMessage({}, key, value))
    return None


def identity(event: CloudEvent) -> str:
    """What makes a CloudEvent unique: its ``source`` and ``id`` (the spec's own rule)."""
    return f"ce\x00{event.source}\x00{event.id}"
