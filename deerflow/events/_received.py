"""The trigger events a connector stores in a run's request and tasks see
(``context.trigger_event``): one model per source, a union discriminated on ``type``."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

__all__ = [
    "CloudEvent",
    "CustomTriggerEvent",
    "KafkaMessageEvent",
    "S3ObjectEvent",
    "ScheduleTickEvent",
    "TriggerEvent",
    "WebhookRequestEvent",
    "parse_trigger_event",
]


class _TriggerEventBase(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    trigger: str = ""
    received_at: float | None = None
    v: int = 1


class CloudEvent(BaseModel):
    """A CloudEvents 1.0 event as a trigger received it (``event.cloudevent``).

    Attributes:
        id: the event's id; with ``source``, its identity (a duplicate is the same run).
        source: the context the event happened in (a URI reference).
        type: what happened, e.g. ``com.example.order.created``.
        specversion: ``"1.0"``.
        subject: what the event is about within ``source``, if given.
        time: when it happened (ISO-8601), if given.
        datacontenttype: the media type of ``data``, if given.
        dataschema: the schema ``data`` follows, if given.
        data: the payload, decoded (JSON as data, text as a string, other bytes as base64).
        extensions: any other attributes, e.g. ``traceparent`` or ``partitionkey``.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    source: str
    type: str
    specversion: str = "1.0"
    subject: str | None = None
    time: str | None = None
    datacontenttype: str | None = None
    dataschema: str | None = None
    data: Any = None
    extensions: dict[str, Any] = Field(default_factory=dict)


class S3ObjectEvent(_TriggerEventBase):
    """An object event from an S3 bucket.

    Attributes:
        bucket: the bucket.
        key: the object key, URL-decoded.
        event_name: e.g. ``s3:ObjectCreated:Put`` (``s3:ObjectCreated:Poll`` in poll mode).
        size: object size in bytes, when known.
        etag: the object's ETag, without quotes.
        version_id: the object version (versioned buckets).
        sequencer: S3's ordering token for events of one key.
        event_time: when S3 says the event happened (ISO-8601).
        raw: the S3 event record (or listing entry) as received; through EventBridge, a
            record of the same shape whose ``eventbridge`` is the event as received.
    """

    type: Literal["s3"] = "s3"
    bucket: str
    key: str
    event_name: str
    size: int | None = None
    etag: str | None = None
    version_id: str | None = None
    sequencer: str | None = None
    event_time: str | None = None
    raw: dict[str, Any] = Field(default_factory=dict)


class KafkaMessageEvent(_TriggerEventBase):
    """A message from a Kafka topic.

    Attributes:
        message: the decoded JSON value.
        key: the message key, if any.
        headers: header values decoded as UTF-8.
        topic: the topic.
        partition: the partition.
        offset: the offset within the partition.
        timestamp: the record timestamp in milliseconds since the epoch.
        raw: the undecoded value text and the record's coordinates.
        cloudevent: the CloudEvent the message carries (``ce_`` headers or a
            ``application/cloudevents+json`` value), else ``None``; ``message`` is then its
            ``data``.
    """

    type: Literal["kafka"] = "kafka"
    message: Any = None
    key: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    topic: str
    partition: int
    offset: int
    timestamp: int | None = None
    raw: dict[str, Any] = Field(default_factory=dict)
    cloudevent: CloudEvent | None = None


class WebhookRequestEvent(_TriggerEventBase):
    """An HTTP request accepted by the webhook gateway.

    Attributes:
        path: the request path.
        method: the HTTP method.
        headers: the request headers, minus credentials and signatures.
        body: the JSON body, decoded (validated by ``payload_schema`` when one is given).
        text: the raw body as text.
        query: query-string parameters (the last value of repeated ones).
        delivery_id: the ``Idempotency-Key`` or delivery-id header, if sent.
        body_digest: ``sha256:<hex>`` of the raw body when a delivery id was sent (the same
            id with another body is refused).
        cloudevent: the CloudEvent the request carries (binary, structured or batch mode),
            else ``None``; ``body`` is then its ``data``.
    """

    type: Literal["webhook"] = "webhook"
    path: str
    method: str
    headers: dict[str, str] = Field(default_factory=dict)
    body: Any = None
    text: str = ""
    query: dict[str, str] = Field(default_factory=dict)
    delivery_id: str | None = None
    body_digest: str | None = None
    cloudevent: CloudEvent | None = None

    @property
    def raw(self) -> str:
        """The raw body (same as :attr:`text`)."""
        return self.text


class ScheduleTickEvent(_TriggerEventBase):
    """A tick of a :class:`Schedule`.

    Attributes:
        schedule: the schedule's name.
        scheduled_time: the tick, in the schedule's time zone (a backfilled run's tick too).
        backfill: whether ``deerflow schedules backfill`` started this run.
        late: seconds after its tick (and its jitter) the run was requested.
    """

    type: Literal["schedule"] = "schedule"
    schedule: str
    scheduled_time: datetime
    backfill: bool = False
    late: float = 0.0


class CustomTriggerEvent(BaseModel):
    """A trigger dict of another kind (``engine.start(wf, trigger={...})``), as attributes."""

    model_config = ConfigDict(frozen=True, extra="allow")

    type: str = "custom"


TriggerEvent = Annotated[
    S3ObjectEvent | KafkaMessageEvent | WebhookRequestEvent | ScheduleTickEvent,
    Field(discriminator="type"),
]
"""The trigger events deerflow's connectors produce, a union discriminated on ``type``."""

_KNOWN = frozenset({"s3", "kafka", "webhook", "schedule"})
_Known = S3ObjectEvent | KafkaMessageEvent | WebhookRequestEvent | ScheduleTickEvent
_adapter: TypeAdapter[_Known] = TypeAdapter(TriggerEvent)


def parse_trigger_event(data: Mapping[str, Any]) -> _Known | CustomTriggerEvent:
    """The model for a trigger dict stored in a run's history (``RunRequested.trigger``).

    Raises:
        pydantic.ValidationError: a dict of a known ``type`` that does not fit its model.
    """
    if data.get("type") in _KNOWN:
        return _adapter.validate_python(dict(data))
    return CustomTriggerEvent.model_validate(dict(data))
