"""Domain events as CloudEvents 1.0 (structured JSON), for consumers that read that format.

``EventStore(..., cloudevents=True)`` writes each published event as a structured CloudEvent
(Kafka protocol binding: the record's ``content-type`` header is
``application/cloudevents+json``), so Knative, Argo Events or an EventBridge pipe read the
topic as they read any CloudEvents source. The mapping, written and read with the
``cloudevents`` SDK:

==================  =========================================================
StoredEvent         CloudEvent
==================  =========================================================
``id``, ``type``    ``id``, ``type``
``source``          ``source`` (``"deerflow"`` when the event names none)
``stream``          ``subject`` (also the record key, as always)
``timestamp``       ``time``
``data``            ``data`` (``datacontenttype: application/json``)
``sequence``        extension ``sequence``
``correlation_id``  extension ``correlationid``
``causation_id``    extension ``causationid``
``metadata``        extension ``deerflowmetadata`` (a JSON string), when not empty
==================  =========================================================

Any CloudEvent on an event topic is read back as a :class:`StoredEvent` the same way, written
by deerflow or by another producer, in structured mode or in the Kafka binding's binary mode
(``ce_`` headers; the record's value is the event's data). An append of several events to
one stream stays one ``deerflow.batch`` record (it must land atomically; a CloudEvent holds
one event).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings import kafka
from cloudevents.core.exceptions import BaseCloudEventException
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from deerflow.log.base import Headers, Record

if TYPE_CHECKING:  # the model imports this module to read CloudEvents back
    from deerflow.eventstore._store_model import StoredEvent

CONTENT_TYPE = JSONFormat.CONTENT_TYPE
DEFAULT_SOURCE = "deerflow"
_FORMAT = JSONFormat()


def encode(event: StoredEvent) -> tuple[bytes, Headers]:
    """The record value and headers of ``event`` as a structured CloudEvent."""
    attributes: dict[str, Any] = {
        "id": event.id,
        "source": event.source or DEFAULT_SOURCE,
        "type": event.type,
        "subject": event.stream,
        "time": event.timestamp,
        "datacontenttype": "application/json",
    }
    extensions = {
        "sequence": event.sequence,
        "correlationid": event.correlation_id,
        "causationid": event.causation_id,
        "deerflowmetadata": orjson.dumps(event.metadata).decode() if event.metadata else None,
    }
    attributes.update({name: value for name, value in extensions.items() if value is not None})
    value = _FORMAT.write(CloudEvent(attributes, event.to_json()["data"]))
    headers: Headers = (
        ("content-type", CONTENT_TYPE.encode()),
        ("deerflow-event-type", event.type.encode()),
        ("deerflow-event-id", event.id.encode()),
    )
    return value, headers


def fields(value: bytes) -> dict[str, Any] | None:
    """The :class:`StoredEvent` fields of a structured CloudEvent, or ``None`` if it is none."""
    try:
        event = _FORMAT.read(None, value)
    except (BaseCloudEventException, ValueError, TypeError, KeyError):
        return None
    return _fields_of(event)


def binary_fields(record: Record) -> dict[str, Any] | None:
    """The :class:`StoredEvent` fields of a binary-mode CloudEvent (``ce_`` headers), or
    ``None`` if the record is none."""
    names = {name.lower() for name, _ in record.headers}
    if "ce_specversion" not in names:
        return None
    message = kafka.KafkaMessage(dict(record.headers), record.key, record.value)
    try:
        event = kafka.from_binary(message, _FORMAT)
    except (BaseCloudEventException, ValueError, TypeError, KeyError):
        return None
    found = _fields_of(event)
    if "ce_time" not in names:
        found.pop("timestamp", None)  # the SDK's "now": the record's own time is truer
    if "ce_id" not in names:
        found.pop("id", None)  # nor its random id: one derived from the record's position
    return found


def _fields_of(event: BaseCloudEvent) -> dict[str, Any]:
    attributes = event.get_attributes()
    source = attributes.get("source")
    metadata = attributes.get("deerflowmetadata")
    try:
        extra = orjson.loads(metadata) if isinstance(metadata, str) else {}
    except orjson.JSONDecodeError:
        extra = {}
    found = {
        "id": attributes.get("id"),
        "type": attributes.get("type"),
        "data": event.get_data(),
        "stream": attributes.get("subject"),
        "sequence": attributes.get("sequence"),
        "timestamp": attributes.get("time"),
        "correlation_id": attributes.get("correlationid"),
        "causation_id": attributes.get("causationid"),
        "source": None if source == DEFAULT_SOURCE else source,
        "metadata": extra if isinstance(extra, dict) else {},
    }
    return {name: value for name, value in found.items() if value is not None}
