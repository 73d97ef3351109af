"""The trigger specs of outside sources: a Kafka topic, a webhook path, an S3 bucket."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from deerflow.errors import DefinitionError
from deerflow.events._trigger import EventTrigger

__all__ = ["WEBHOOK_PROVIDERS", "KafkaEvent", "S3Event", "WebhookEvent"]

_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
_S3_FILTER_KEYS = frozenset({"prefix", "suffix"})
#: The senders whose signature schemes ``WebhookEvent(provider=...)`` verifies.
WEBHOOK_PROVIDERS = ("github", "stripe", "standard", "slack", "shopify")
_DEDUPE_ROOTS = ("body", "headers")


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
