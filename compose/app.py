"""The example app of the compose stack: files dropped into MinIO and webhook calls start runs.

Every deerflow container of the stack loads this file: ``deerflow serve`` (the gateway, the
triggers and the dashboard) and each ``deerflow worker`` replica. Two workflows:

``object_ingest``
    MinIO publishes a notification for every object created under ``incoming/`` in the
    ``uploads`` bucket to the Kafka topic ``minio-events`` (see docker-compose.yml). A
    ``KafkaEvent`` trigger starts one run per notification; the run reads the object back from
    MinIO and counts its bytes and lines. MinIO delivers notifications at least once; the
    trigger's ``dedupe_key`` (bucket, key and MinIO's sequencer) makes a repeated notification
    the same run.
``order_intake``
    ``POST /hooks/orders`` with an API key (``X-API-Key`` or ``Authorization: Bearer``) and a
    JSON order starts a run that reserves each item in parallel (one child task per item,
    spread over the workers) and then confirms the order. Send ``Idempotency-Key`` to make a
    retried request the same run.

S3 settings come from the environment, as boto3 reads them: ``AWS_ENDPOINT_URL`` (MinIO),
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``. The topic is
``$MINIO_EVENTS_TOPIC`` (default ``minio-events``).
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import unquote_plus

from pydantic import BaseModel, Field

from deerflow import TaskContext, Workflow
from deerflow.events import KafkaEvent, WebhookEvent

MINIO_EVENTS_TOPIC = os.environ.get("MINIO_EVENTS_TOPIC", "minio-events")


# -- MinIO's notifications, as its Kafka target publishes them --------------------------------


def is_object_created(message: Any) -> bool:
    """Whether a MinIO notification (``{"EventName", "Key", "Records"}``) is a new object."""
    return isinstance(message, dict) and str(message.get("EventName", "")).startswith(
        "s3:ObjectCreated:")


def object_of(message: dict[str, Any]) -> dict[str, Any]:
    """Bucket, decoded key, size and version marker of the notification's S3 record.

    Keys arrive URL-encoded in S3 event records (``+`` for a space), as on AWS.
    """
    s3 = message["Records"][0]["s3"]
    obj = s3["object"]
    return {"bucket": s3["bucket"]["name"], "key": unquote_plus(obj["key"]),
            "size": obj.get("size"), "version": obj.get("sequencer") or obj.get("eTag") or ""}


def notification_identity(message: dict[str, Any]) -> str:
    """One object write: bucket/key@sequencer. A redelivered notification has the same one."""
    found = object_of(message)
    return f"{found['bucket']}/{found['key']}@{found['version']}"


def s3_client() -> Any:
    """A boto3 S3 client configured from the environment (``AWS_ENDPOINT_URL`` for MinIO)."""
    import boto3

    return boto3.client("s3", region_name=os.environ.get("AWS_REGION", "us-east-1"))


object_ingest = Workflow(name="object_ingest",
                         description="Count the lines of every file uploaded to MinIO")
object_ingest.add_trigger(KafkaEvent(
    topic=MINIO_EVENTS_TOPIC,
    consumer_group="deerflow-object-ingest",
    filter=is_object_created,
    dedupe_key=notification_identity,
))


@object_ingest.task(id="describe")
def describe(context: TaskContext) -> dict[str, Any]:
    """Which object this run is about (from the trigger event's S3 record)."""
    return object_of(context.trigger_event.message)


@object_ingest.task(id="count_lines", depends_on=["describe"], retries=3, retry_delay=1.0,
                    timeout=120)
def count_lines(context: TaskContext) -> dict[str, Any]:
    """Read the object from MinIO and count it (retried if MinIO is briefly unavailable)."""
    found = context.tasks["describe"].output
    body = s3_client().get_object(Bucket=found["bucket"], Key=found["key"])["Body"].read()
    context.logger.info("read s3://%s/%s: %d bytes", found["bucket"], found["key"], len(body))
    return {"object": f"s3://{found['bucket']}/{found['key']}", "bytes": len(body),
            "lines": body.count(b"\n")}


# -- Orders over the webhook gateway ---------------------------------------------------------


class Order(BaseModel):
    """The body ``POST /hooks/orders`` must carry (else 422)."""

    order_id: str
    items: list[str] = Field(min_length=1)
    amount: float = Field(gt=0)


order_intake = Workflow(name="order_intake", description="Reserve an order's items, confirm it")
order_intake.add_trigger(WebhookEvent(path="/hooks/orders", method="POST", auth="api_key",
                                      payload_schema=Order))


@order_intake.task(id="accept")
def accept(context: TaskContext) -> dict[str, Any]:
    """The order as the gateway validated it."""
    order: dict[str, Any] = context.trigger_event.body
    return order


@order_intake.parallel_tasks(id="reserve", depends_on=["accept"], over="accept.items",
                             retries=2, retry_delay=0.5)
def reserve(item: str, context: TaskContext) -> dict[str, str]:
    """Reserve one item (one child task per item; any worker may run it)."""
    return {"item": item, "reservation": f"{context.run_id}/{item}"}


@order_intake.task(id="confirm", depends_on=["accept", "reserve"])
def confirm(context: TaskContext) -> dict[str, Any]:
    """Confirm once every item is reserved."""
    order = context.tasks["accept"].output
    return {"order_id": order["order_id"], "amount": order["amount"],
            "reservations": [r["reservation"] for r in context.parallel_results["reserve"]]}
