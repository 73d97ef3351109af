"""Event triggers: files dropped into S3, Kafka messages and webhook calls start one workflow.

The spec's "Event Triggers" sample as written, plus the two helpers it calls. Serve it with::

    export DEERFLOW_KAFKA_BOOTSTRAP=localhost:9092   # the cluster holding the data-events topic
    export DEERFLOW_API_KEYS=change-me               # keys the webhook accepts (X-API-Key)
    export AWS_ENDPOINT_URL=http://localhost:9000    # only for MinIO/moto; omit on AWS
    deerflow serve examples/triggers.py --port 8000

then drop ``incoming/*.parquet`` into the ``data-lake`` bucket, publish
``{"type": "new_data", ...}`` to ``data-events``, or
``curl -X POST -H 'X-API-Key: change-me' localhost:8000/trigger/pipeline -d '{}'``.
Each answer of the webhook carries a ``status_url`` to follow the run.
"""

from __future__ import annotations

from typing import Any

from deerflow import EventTrigger, Workflow  # noqa: F401 - the spec imports both
from deerflow.events import KafkaEvent, S3Event, WebhookEvent


def process_s3_file(bucket: str, key: str) -> dict[str, Any]:
    """Stand-in for real work on a new file: say which object arrived."""
    return {"source": "s3", "uri": f"s3://{bucket}/{key}"}


def process_kafka_message(message: dict[str, Any]) -> dict[str, Any]:
    """Stand-in for real work on a message: echo what arrived."""
    return {"source": "kafka", "message": message}


workflow = Workflow(name="event_driven_pipeline")

# S3 event trigger
workflow.add_trigger(
    S3Event(
        bucket="data-lake",
        prefix="incoming/",
        events=["s3:ObjectCreated:*"],
        filter={"suffix": ".parquet"},
    )
)

# Kafka event trigger
workflow.add_trigger(
    KafkaEvent(
        topic="data-events", consumer_group="deerflow", filter=lambda msg: msg["type"] == "new_data"
    )
)

# Webhook trigger
workflow.add_trigger(WebhookEvent(path="/trigger/pipeline", method="POST", auth="api_key"))


@workflow.task(id="process_event")
def process_event(context):
    event = context.trigger_event
    if event.type == "s3":
        return process_s3_file(event.bucket, event.key)
    elif event.type == "kafka":
        return process_kafka_message(event.message)
