"""S3 objects as a pipeline source, on moto_server: lines of the objects named by keys or S3
event records, and, from an SQS queue of bucket notifications, lines of new objects with each
message deleted only once all its lines have left the pipeline."""

from __future__ import annotations

import asyncio
from typing import Any

import boto3
import orjson
import pytest

from deerflow import Pipeline, Workflow, stage
from deerflow.pipeline import PipelineRuntime, S3Source
from tests.pipeline.conftest import Collector, eventually
from tests.services import unique_name

pytestmark = pytest.mark.s3


@pytest.fixture
def aws(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    """S3 and SQS clients on moto, with dummy credentials in the environment."""
    for var, value in (
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        monkeypatch.setenv(var, value)
    options = {"endpoint_url": moto_endpoint, "region_name": "us-east-1"}
    return boto3.client("s3", **options), boto3.client("sqs", **options)


def jsonl(rows) -> bytes:
    return b"\n".join(orjson.dumps(row) for row in rows) + b"\n"


class Totals(Pipeline):
    @stage(parallelism=3)
    def amount(self, row):
        return row["amount"]


def test_lines_of_the_named_objects_stream_through_and_bad_lines_are_dead_lettered(
    aws, moto_endpoint, collected, letters
):
    s3, _ = aws
    bucket = unique_name("bucket")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(
        Bucket=bucket, Key="day=1/orders.jsonl", Body=jsonl({"amount": n} for n in range(1200))
    )
    s3.put_object(
        Bucket=bucket,
        Key="day=2/orders one.jsonl",
        Body=jsonl([{"amount": 5000}]) + b"{broken\n" + jsonl([{"amount": 6000}]),
    )
    # The second object as S3 names it in an event record: URL-encoded key.
    record = {
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": bucket}, "object": {"key": "day%3D2/orders+one.jsonl"}},
    }
    wf = Workflow(name="s3_lines")
    wf.pipeline(sink=collected, dead_letter=letters)(Totals)

    source = S3Source(
        bucket,
        objects=["day=1/orders.jsonl", record, "missing.jsonl"],
        format="jsonl",
        endpoint_url=moto_endpoint,
        chunk_lines=100,
    )
    result = wf.run(input=source)

    assert result.status == "completed"
    assert sorted(collected.items) == [*range(1200), 5000, 6000]
    reasons = {(d.origin or {}).get("key"): d for d in letters.items}
    assert reasons["day=2/orders one.jsonl"].origin["line"] == 2
    assert "cannot parse line" in reasons["day=2/orders one.jsonl"].reason
    assert "cannot read object" in reasons["missing.jsonl"].reason
    assert result.output["source"]["objects_read"] == 2


def queue_for(s3: Any, sqs: Any, bucket: str) -> str:
    url = sqs.create_queue(QueueName=unique_name("q"))["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]
        },
    )
    return url


async def queue_drained(sqs: Any, url: str) -> bool:
    attrs = (
        await asyncio.to_thread(
            sqs.get_queue_attributes,
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )
    )["Attributes"]
    return (
        attrs["ApproximateNumberOfMessages"]
        == "0"
        == attrs["ApproximateNumberOfMessagesNotVisible"]
    )


async def test_new_objects_from_bucket_notifications_and_messages_deleted_when_done(
    aws, moto_endpoint
):
    s3, sqs = aws
    bucket = unique_name("bucket")
    s3.create_bucket(Bucket=bucket)
    url = queue_for(s3, sqs, bucket)
    release = asyncio.Event()

    class HoldsOneLine(Pipeline):
        @stage(parallelism=3)
        async def amount(self, row):
            if row["amount"] == 0:
                await release.wait()
            return row["amount"]

    got = Collector()
    source = S3Source(queue=url, format="jsonl", endpoint_url=moto_endpoint, wait_seconds=1)
    assert source.unbounded  # so `deerflow serve` runs it

    async with PipelineRuntime(HoldsOneLine, source=source, sink=got) as runtime:
        for day in range(3):
            await asyncio.to_thread(
                s3.put_object,
                Bucket=bucket,
                Key=f"in/{day}.jsonl",
                Body=jsonl({"amount": day * 100 + n} for n in range(50)),
            )
        await eventually(lambda: len(got) == 149, within=30, what="all lines but the held one")
        await asyncio.sleep(0.5)
        assert not await queue_drained(sqs, url)  # day 0's message waits for its last line
        release.set()
        await eventually(
            lambda: queue_drained(sqs, url), within=30, what="every notification deleted"
        )
    assert sorted(got.items) == [d * 100 + n for d in range(3) for n in range(50)]
    assert runtime.report().source["messages_deleted"] >= 3
