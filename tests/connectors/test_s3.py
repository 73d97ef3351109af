"""S3 triggers against moto_server: bucket notifications through SQS, hand-built AWS messages
for what moto does not mimic (sequencers, versions, encoded keys), and polling mode."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from deerflow import Engine
from deerflow.connectors import S3NotificationSource, S3PollingSource
from deerflow.events import S3Event
from tests.connectors.conftest import (
    dead_letters,
    eventually,
    finished_runs,
    queue_is_empty,
    send_to,
)
from tests.services import unique_name

pytestmark = pytest.mark.s3


def spec(moto_endpoint: str, bucket: str, **extra: Any) -> S3Event:
    return S3Event(
        bucket=bucket,
        prefix="incoming/",
        events=["s3:ObjectCreated:*"],
        filter={"suffix": ".parquet"},
        endpoint_url=moto_endpoint,
        wait_seconds=1,
        **extra,
    )


def record(
    bucket: str,
    key: str,
    *,
    sequencer: str | None = None,
    version: str | None = None,
    etag: str = "abc",
    name: str = "ObjectCreated:Put",
) -> dict[str, Any]:
    """An S3 event record shaped as AWS sends it (key URL-encoded as AWS does)."""
    obj: dict[str, Any] = {"key": key, "size": 10, "eTag": etag}
    if sequencer:
        obj["sequencer"] = sequencer
    if version:
        obj["versionId"] = version
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2026-01-01T00:00:00.000Z",
        "eventName": name,
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket}, "object": obj},
    }


async def test_dropped_files_start_one_run_each_and_existing_notifications_are_kept(
    engine: Engine, aws: tuple[Any, Any], moto_endpoint: str
) -> None:
    s3, sqs = aws
    bucket = unique_name("lake")
    s3.create_bucket(Bucket=bucket)
    theirs = sqs.create_queue(QueueName=unique_name("theirs"))["QueueUrl"]
    their_arn = sqs.get_queue_attributes(QueueUrl=theirs, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {"Id": "theirs", "QueueArn": their_arn, "Events": ["s3:ObjectRemoved:*"]}
            ]
        },
    )
    source = S3NotificationSource(engine, "on_event", spec(moto_endpoint, bucket), "lake")
    await engine.add_service(source)
    ids = {
        q["Id"]
        for q in s3.get_bucket_notification_configuration(Bucket=bucket)["QueueConfigurations"]
    }
    assert "theirs" in ids and len(ids) == 2

    keys = ["incoming/a.parquet", "incoming/dir/b c+d=1.parquet", "incoming/ünï.parquet"]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"data")
    s3.put_object(Bucket=bucket, Key="incoming/skip.csv", Body=b"no")
    s3.put_object(Bucket=bucket, Key="elsewhere/c.parquet", Body=b"no")
    upload = s3.create_multipart_upload(Bucket=bucket, Key="incoming/big.parquet")
    part = s3.upload_part(
        Bucket=bucket,
        Key="incoming/big.parquet",
        PartNumber=1,
        UploadId=upload["UploadId"],
        Body=b"x" * 10,
    )
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key="incoming/big.parquet",
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]},
    )

    runs = await finished_runs(engine, 4)
    await asyncio.sleep(1.5)  # one more receive: any extra run would show up now
    runs = await engine.list_runs()
    events = [r.output["event"] for r in runs]
    assert sorted(e["key"] for e in events) == sorted([*keys, "incoming/big.parquet"])
    assert all(e["type"] == "s3" and e["bucket"] == bucket for e in events)
    assert all(e["event_name"].startswith("s3:ObjectCreated:") for e in events)
    assert all(e["raw"]["s3"]["bucket"]["name"] == bucket for e in events)
    await eventually(lambda: queue_is_empty(sqs, source.queue_url), what="an empty queue")


async def test_hand_built_aws_messages_are_decoded_deduplicated_and_stale_ones_ignored(
    engine: Engine, aws: tuple[Any, Any], moto_endpoint: str
) -> None:
    _, sqs = aws
    bucket = unique_name("lake")
    url = sqs.create_queue(QueueName=unique_name("managed"))["QueueUrl"]

    def send(body: Any) -> None:
        send_to(sqs, url, body)

    send({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": bucket})
    newer = record(bucket, "incoming/report+2026%2F01.parquet", sequencer="0055AED6DCD90281E6")
    send({"Records": [newer]})
    send({"Records": [newer]})  # the same event delivered twice
    send(
        {
            "Records": [
                record(
                    bucket,
                    "incoming/report+2026%2F01.parquet",
                    sequencer="0055AED6DCD90281E5",
                    etag="older",
                )
            ]
        }
    )  # stale
    versioned = record(bucket, "incoming/v.parquet", version="v1", sequencer="01")
    send({"Type": "Notification", "Message": orjson.dumps({"Records": [versioned]}).decode()})
    send("this is not an S3 event")
    send({"Records": [record(bucket, "incoming/x.parquet", name="ObjectRemoved:Delete")]})

    trigger = spec(moto_endpoint, bucket, queue=url)
    source = S3NotificationSource(engine, "on_event", trigger, "managed")
    await engine.add_service(source)
    runs = await finished_runs(engine, 2)
    await eventually(lambda: queue_is_empty(sqs, url), what="an empty queue")
    runs = await engine.list_runs()
    assert len(runs) == 2
    by_key = {r.output["event"]["key"]: r.output["event"] for r in runs}
    assert set(by_key) == {"incoming/report 2026/01.parquet", "incoming/v.parquet"}
    assert by_key["incoming/report 2026/01.parquet"]["sequencer"] == "0055AED6DCD90281E6"
    assert by_key["incoming/v.parquet"]["version_id"] == "v1"

    letters = await dead_letters(engine)
    assert [x["body"] for x in letters] == ["this is not an S3 event"]
    assert letters[0]["reason"].startswith("message body is not JSON")

    # The newest sequencer is durable: after a restart an older event is still stale.
    await source.stop()
    send(
        {
            "Records": [
                record(
                    bucket,
                    "incoming/report+2026%2F01.parquet",
                    sequencer="0055AED6DCD90281E4",
                    etag="oldest",
                )
            ]
        }
    )
    restarted = S3NotificationSource(engine, "on_event", trigger, "managed")
    await engine.add_service(restarted)
    await eventually(lambda: queue_is_empty(sqs, url), what="the stale message deleted")
    assert len(await engine.list_runs()) == 2


async def test_polling_mode_keeps_a_durable_cursor_across_restarts(
    engine: Engine, aws: tuple[Any, Any], moto_endpoint: str
) -> None:
    s3, _ = aws
    bucket = unique_name("minio")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="incoming/old.parquet", Body=b"before the trigger")
    trigger = spec(moto_endpoint, bucket, mode="poll", poll_interval=0.2)
    poller = S3PollingSource(engine, "on_event", trigger, "poller")
    await engine.add_service(poller)
    await eventually(lambda: _has_cursor(poller), what="a first listing")
    for i in range(3):
        s3.put_object(Bucket=bucket, Key=f"incoming/{i}.parquet", Body=b"new")
    s3.put_object(Bucket=bucket, Key="incoming/3.csv", Body=b"filtered")
    await finished_runs(engine, 3)
    await poller.stop()

    s3.put_object(Bucket=bucket, Key="incoming/while-down.parquet", Body=b"new")
    s3.put_object(Bucket=bucket, Key="incoming/0.parquet", Body=b"rewritten")
    again = S3PollingSource(engine, "on_event", trigger, "poller")
    await engine.add_service(again)
    runs = await finished_runs(engine, 5)
    await asyncio.sleep(0.6)  # a few more polls repeat nothing
    runs = await engine.list_runs()
    keys = sorted(r.output["event"]["key"] for r in runs)
    assert keys == sorted(
        [
            "incoming/0.parquet",
            "incoming/0.parquet",
            "incoming/1.parquet",
            "incoming/2.parquet",
            "incoming/while-down.parquet",
        ]
    )


async def _has_cursor(poller: S3PollingSource) -> bool:
    return poller.ledger.get(poller.name) is not None
