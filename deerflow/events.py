"""Event triggers and the trigger events they deliver to tasks.

A trigger *spec* says which outside events start runs of a workflow::

    workflow.add_trigger(S3Event(bucket="data-lake", prefix="incoming/",
                                 events=["s3:ObjectCreated:*"], filter={"suffix": ".parquet"}))
    workflow.add_trigger(KafkaEvent(topic="data-events", consumer_group="deerflow",
                                    filter=lambda msg: msg["type"] == "new_data"))
    workflow.add_trigger(WebhookEvent(path="/trigger/pipeline", method="POST", auth="api_key"))
    workflow.add_trigger(Schedule(cron="0 * * * *", timezone="Europe/Paris"))

``deerflow serve`` runs a connector for each spec (:mod:`deerflow.connectors`). A connector turns
each accepted event into a *trigger event* model, stores it in the run's ``RunRequested`` event
and only then acknowledges the source. Inside a task, ``context.trigger_event`` is that model
again (:func:`parse_trigger_event`), typed by ``event.type``: ``"s3"``, ``"kafka"``,
``"webhook"`` or ``"schedule"``; a run started by hand with some other ``trigger=`` dict gets a
:class:`CustomTriggerEvent`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from deerflow._durations import parse_duration
from deerflow.errors import DefinitionError

__all__ = [
    "CloudEvent",
    "CustomTriggerEvent",
    "EventTrigger",
    "KafkaEvent",
    "KafkaMessageEvent",
    "S3Event",
    "S3ObjectEvent",
    "Schedule",
    "ScheduleTickEvent",
    "TriggerEvent",
    "WebhookEvent",
    "WebhookRequestEvent",
    "parse_trigger_event",
    "trigger_name",
]

_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.\-]+")
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
_S3_FILTER_KEYS = frozenset({"prefix", "suffix"})
#: The senders whose signature schemes ``WebhookEvent(provider=...)`` verifies.
WEBHOOK_PROVIDERS = ("github", "stripe", "standard", "slack", "shopify")
_DEDUPE_ROOTS = ("body", "headers")


# -- trigger specs ----------------------------------------------------------------------------


class EventTrigger(BaseModel):
    """Base of every trigger spec: something outside that starts runs of a workflow.

    Attributes:
        name: a stable name for the trigger (``deerflow triggers replay NAME``, durable cursors);
            default ``<workflow>.<type>.<what>`` (see :func:`trigger_name`).
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True, extra="forbid")

    source: ClassVar[str] = "custom"
    name: str | None = None

    @model_validator(mode="wrap")
    @classmethod
    def _one_line_errors(cls, data: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        # A spec is written by hand in the user's file: say what is wrong with it in one
        # line, naming the valid options, instead of pydantic's multi-line report.
        try:
            return handler(data)
        except ValidationError as exc:
            raise DefinitionError(spec_problem(cls, exc)) from None

    def describe(self) -> str:
        """What the trigger listens to, for names and logs."""
        return self.source

    def listens_to(self) -> str:
        """What the trigger listens to, as the dashboard and ``GET /api/triggers`` show it
        (:meth:`describe` unless a trigger says more; never part of a name)."""
        return self.describe()

    def attached(self, workflow: str) -> None:
        """Check the spec as a trigger of ``workflow`` (``add_trigger`` calls it).

        Raises:
            DefinitionError: naming the workflow, for a spec that cannot work (default: none).
        """


class KafkaEvent(EventTrigger):
    """Start a run for every message of a Kafka topic that passes ``filter``.

    Exactly one run per message: the run id is derived from group/topic/partition/offset (or
    from ``dedupe_key``), and offsets are committed only once the run request is durable.

    Attributes:
        topic: the topic to consume.
        consumer_group: the Kafka consumer group; processes sharing it share the partitions.
        filter: a predicate over the decoded JSON message; a message it rejects starts no run,
            a message it raises on goes to the dead-letter topic.
        dedupe_key: the message's own identity, e.g. ``lambda msg: msg["id"]``: messages with
            the same key start one run wherever they sit in the topic (for producers that may
            send a message twice). Without it, each offset is a message of its own. A message
            it raises on, or returns ``None`` for, goes to the dead-letter topic.
        payload_schema: a pydantic model the decoded message must satisfy, else it goes to
            the dead-letter topic; tasks then see the validated message.
        bootstrap_servers: the cluster (``host:port,...``); default the store's Kafka cluster,
            else ``DEERFLOW_KAFKA_BOOTSTRAP``.
        start_from: where a group that never committed starts, ``earliest`` or ``latest``.
        batch_size: messages read and requested at once (also the bound on buffered messages).
    """

    source: ClassVar[str] = "kafka"
    topic: str
    consumer_group: str = "deerflow"
    filter: Callable[[Any], bool] | None = None
    dedupe_key: Callable[[Any], Any] | None = None
    payload_schema: type[BaseModel] | None = None
    bootstrap_servers: str | None = None
    start_from: Literal["earliest", "latest"] = "earliest"
    batch_size: int = Field(default=100, ge=1, le=10_000)

    def describe(self) -> str:
        """See :meth:`EventTrigger.describe`."""
        return f"kafka.{self.topic}"


class WebhookEvent(EventTrigger):
    """Start a run for every accepted HTTP request to ``path`` on the webhook gateway.

    Attributes:
        path: the URL path, e.g. ``/trigger/pipeline``.
        method: the HTTP method accepted (others get 405).
        auth: ``"api_key"`` (``X-API-Key`` or ``Authorization: Bearer``, keys from
            ``DEERFLOW_API_KEYS`` or the config file), ``"hmac"`` (signatures only) or ``"none"``.
        signing_secrets: HMAC-SHA256 secrets; when set (or ``auth="hmac"``), requests must carry
            a valid ``Deerflow-Signature: t=<unix>,v1=<hex>`` header; several secrets are all
            accepted (key rotation). ``auth="hmac"`` without secrets reads
            ``DEERFLOW_WEBHOOK_SECRETS`` or the config file.
        signature_header: the header carrying the signature.
        tolerance: seconds a signature's timestamp may differ from now.
        delivery_id_header: a header naming the delivery (e.g. ``X-GitHub-Delivery``), used like
            ``Idempotency-Key``: a repeated delivery returns the same run.
        provider: verify a sender's own signature scheme instead of ``Deerflow-Signature``
            (``"github"``, ``"stripe"``, ``"standard"`` for Standard Webhooks / Svix,
            ``"slack"``, ``"shopify"``), with ``signing_secrets`` as that sender's secrets; the
            sender's delivery id names the run, so its retries are the same run.
        dedupe_key: where the request names itself, ``"body.<path>"`` (e.g.
            ``"body.event.id"``) or ``"headers.<name>"``: requests with the same value are
            one run, as ``KafkaEvent(dedupe_key=...)``. A request without it gets 400.
        payload_schema: a pydantic model the JSON body must satisfy (else 422).
        max_body: the largest body accepted, in bytes (else 413).
    """

    source: ClassVar[str] = "webhook"
    path: str
    method: str = "POST"
    auth: Literal["api_key", "hmac", "none"] = "none"
    signing_secrets: tuple[SecretStr, ...] = ()
    signature_header: str = "Deerflow-Signature"
    tolerance: float = Field(default=300.0, gt=0)
    delivery_id_header: str | None = None
    provider: str | None = None
    dedupe_key: str | None = None
    payload_schema: type[BaseModel] | None = None
    max_body: int = Field(default=1024 * 1024, ge=1)

    @field_validator("provider")
    @classmethod
    def _provider_is_known(cls, value: str | None) -> str | None:
        if value is not None and value not in WEBHOOK_PROVIDERS:
            known = ", ".join(WEBHOOK_PROVIDERS)
            raise ValueError(f"unknown webhook provider {value!r} (use one of {known})")
        return value

    @field_validator("dedupe_key")
    @classmethod
    def _dedupe_key_is_a_path(cls, value: str | None) -> str | None:
        root, _, path = (value or "").partition(".")
        if value is not None and (root not in _DEDUPE_ROOTS or not path.strip(".")):
            raise ValueError(
                f"dedupe_key {value!r} must be 'body.<path>' or 'headers.<name>', "
                "e.g. 'body.event.id'"
            )
        return value

    @field_validator("path")
    @classmethod
    def _path_is_absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"webhook path must start with '/', got {value!r}")
        return value

    @field_validator("method")
    @classmethod
    def _method_is_known(cls, value: str) -> str:
        method = value.upper()
        if method not in _METHODS:
            raise ValueError(f"unsupported webhook method {value!r} (use {sorted(_METHODS)})")
        return method

    def describe(self) -> str:
        """See :meth:`EventTrigger.describe`."""
        return "webhook" + self.path.replace("/", ".").rstrip(".")


class S3Event(EventTrigger):
    """Start a run for every matching object event of an S3 bucket.

    By default deerflow creates (or reuses) an SQS queue for the trigger and adds a bucket
    notification to it, merged with the bucket's existing notifications. ``queue=`` consumes
    a queue you manage instead; ``mode="poll"`` lists the bucket periodically (for S3-compatible
    stores without notifications), keeping a durable cursor in the event log.

    Attributes:
        bucket: the bucket.
        prefix: only keys starting with it.
        events: event-name patterns, e.g. ``s3:ObjectCreated:*``.
        filter: ``{"suffix": ".parquet"}`` and/or ``{"prefix": ...}`` on the decoded key.
        queue: an SQS queue name or URL to consume instead of deerflow's own.
        via: ``"s3"`` (the bucket's own notifications) or ``"eventbridge"``: S3's
            EventBridge events ("Object Created", "Object Deleted") that a rule delivers to
            ``queue`` (required then), with the same identities, filters and decoding.
        mode: ``"notification"`` (SQS) or ``"poll"`` (ListObjectsV2).
        endpoint_url: S3/SQS endpoint (MinIO, moto, ...); else boto3's usual configuration.
        region: AWS region; else boto3's usual configuration.
        configure_bucket: add the bucket notification (notification mode without ``queue``).
        wait_seconds: SQS long-poll wait (also bounds how long a shutdown waits).
        visibility_timeout: seconds a received SQS message stays hidden before redelivery.
        poll_interval: seconds between listings in poll mode.
        lookback: poll mode: seconds before the newest object seen in which late objects are
            still picked up (objects whose LastModified lies further back are not).
        start_from: poll mode: ``"now"`` ignores objects already in the bucket on first start.
    """

    source: ClassVar[str] = "s3"
    bucket: str
    prefix: str = ""
    events: tuple[str, ...] = ("s3:ObjectCreated:*",)
    filter: Mapping[str, str] | None = None
    queue: str | None = None
    via: Literal["s3", "eventbridge"] = "s3"
    mode: Literal["notification", "poll"] = "notification"
    endpoint_url: str | None = None
    region: str | None = None
    configure_bucket: bool = True
    wait_seconds: int = Field(default=5, ge=0, le=20)
    visibility_timeout: int = Field(default=60, ge=1)
    poll_interval: float = Field(default=30.0, gt=0)
    lookback: float = Field(default=900.0, ge=0)
    start_from: Literal["now", "earliest"] = "now"

    @field_validator("filter")
    @classmethod
    def _filter_keys(cls, value: Mapping[str, str] | None) -> Mapping[str, str] | None:
        if value is not None and not set(value) <= _S3_FILTER_KEYS:
            raise ValueError(f"S3Event filter takes 'prefix' and 'suffix', got {sorted(value)}")
        return value

    @model_validator(mode="after")
    def _eventbridge_needs_a_queue(self) -> S3Event:
        if self.via == "eventbridge" and (self.queue is None or self.mode == "poll"):
            # Raised as it is: an "after" check runs outside _one_line_errors.
            raise DefinitionError(
                "S3Event: via='eventbridge' reads the SQS queue an EventBridge rule delivers "
                "to: give queue= (and keep mode='notification')"
            )
        return self

    @property
    def key_prefix(self) -> str:
        """The prefix keys must have (``prefix`` or ``filter["prefix"]``)."""
        return self.prefix or (self.filter or {}).get("prefix", "")

    @property
    def key_suffix(self) -> str:
        """The suffix keys must have (``filter["suffix"]``), or ``""``."""
        return (self.filter or {}).get("suffix", "")

    def describe(self) -> str:
        """See :meth:`EventTrigger.describe`."""
        return f"s3.{self.bucket}"


#: Missed ticks ``catchup="all"`` runs after downtime, at most (the newest ones).
MAX_CATCHUP = 1000


class Schedule(EventTrigger):
    """Start a run at every tick of a cron expression or a fixed interval.

    Each tick is one run, whatever the number of processes serving the workflow: the run id
    is derived from the schedule's name and the tick, and the schedule is fired by the one
    process its partition of the schedules topic is assigned to in the consumer group.

    Attributes:
        cron: a cron expression (5 fields, or 6 with seconds first; ``L``, ``#`` and names as
            cronsim reads them), in ``timezone``.
        every: a fixed interval instead: ``"30s"``, ``"5m"``, ``"1h"``, ``"1d"`` or seconds;
            ticks fall on multiples of it from ``start`` (default the Unix epoch).
        timezone: the IANA zone ``cron`` is read in (``"Europe/Paris"``); default UTC.
        jitter: up to this long (``"30s"``, seconds) after its tick a run starts, the same
            delay for a tick in every process (derived from the tick); spreads load.
        start: no tick before this instant (a naive datetime is in ``timezone``). In the
            past when the schedule is first served, the ticks since then count as missed
            (``catchup`` says which run); without it, a new schedule begins at its next tick.
        end: no tick after this instant.
        catchup: what runs when ticks were missed (no process served the schedule, or the
            engine ran ``max_running`` runs): ``"skip"`` none of them, ``"latest"`` (default)
            only the newest, ``"all"`` each of them, at most ``max_catchup`` (the newest).
        max_catchup: the bound on ``catchup="all"``.
        grace: seconds a tick may be late and still be on time (not missed).
        params: the params of every run it starts.
    """

    source: ClassVar[str] = "schedule"
    cron: str | None = None
    every: str | float | None = None
    timezone: str = "UTC"
    jitter: str | float = 0.0
    start: datetime | None = None
    end: datetime | None = None
    catchup: Literal["skip", "latest", "all"] = "latest"
    max_catchup: int = Field(default=100, ge=1, le=MAX_CATCHUP)
    grace: float = Field(default=60.0, ge=0)
    params: Mapping[str, Any] | None = None

    def describe(self) -> str:
        """See :meth:`EventTrigger.describe`."""
        return "schedule"

    def listens_to(self) -> str:
        """See :meth:`EventTrigger.listens_to`: the cron or the interval (:attr:`when`)."""
        return self.when

    @property
    def when(self) -> str:
        """The schedule as a person reads it: ``cron 0 * * * * (Europe/Paris)``, ``every 5m``."""
        if self.cron is not None:
            return f"cron {self.cron} ({self.timezone})"
        return f"every {self.every}"

    @property
    def zone(self) -> ZoneInfo:
        """The time zone (checked by :meth:`attached`)."""
        return ZoneInfo(self.timezone)

    @property
    def period(self) -> float | None:
        """``every`` in seconds, ``None`` for a cron schedule."""
        return None if self.every is None else parse_duration(self.every, "every")

    @property
    def jitter_seconds(self) -> float:
        """``jitter`` in seconds."""
        return parse_duration(self.jitter, "jitter")

    def attached(self, workflow: str) -> None:
        """See :meth:`EventTrigger.attached`: the cron, zone and interval are checked here."""
        problem = self._problem()
        if problem is not None:
            raise DefinitionError(f"workflow {workflow!r}: Schedule({self._shown()}): {problem}")

    def _shown(self) -> str:
        if self.cron is not None:
            return f"cron={self.cron!r}"
        return f"every={self.every!r}" if self.every is not None else ""

    def _problem(self) -> str | None:
        if (self.cron is None) == (self.every is None):
            return "give exactly one of cron= and every="
        try:
            zone = ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            return f"unknown timezone {self.timezone!r} (an IANA name, e.g. 'Europe/Paris')"
        try:
            period = self.period
            jitter = self.jitter_seconds
        except ValueError as exc:
            return str(exc)
        if period is not None and period <= 0:
            return f"every={self.every!r} must be longer than zero"
        if period is not None and jitter >= period:
            return f"jitter={self.jitter!r} must be shorter than the interval"
        if self.cron is not None:
            try:
                CronSim(self.cron, datetime.now(zone))
            except CronSimError as exc:
                return f"invalid cron expression ({exc})"
        if (
            self.start is not None
            and self.end is not None
            and self.aware(self.start) >= self.aware(self.end)
        ):
            return "start= must be before end="
        return None

    def aware(self, moment: datetime) -> datetime:
        """``moment`` with this schedule's zone when it has none."""
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=self.zone)


def spec_problem(cls: type[BaseModel], exc: ValidationError) -> str:
    """``cls(...)``'s validation errors as one line naming the valid options."""
    problems: list[str] = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        where = ".".join(str(part) for part in error["loc"])
        if error["type"] == "extra_forbidden":
            options = ", ".join(sorted(cls.model_fields))
            problems.append(f"unknown option {where!r} (options: {options})")
        elif error["type"] == "missing":
            problems.append(f"{where!r} is required")
        else:
            problems.append(f"{where}: {error['msg'].removeprefix('Value error, ')}")
    return f"{cls.__name__}: {'; '.join(problems)}"


def trigger_name(workflow: str, trigger: EventTrigger) -> str:
    """The trigger's ``name``, else ``<workflow>.<what it listens to>``, URL-safe."""
    return trigger.name or _NAME_CHARS.sub("-", f"{workflow}.{trigger.describe()}")


# -- trigger events (what tasks see) ----------------------------------------------------------


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
