"""S3 events through EventBridge: hand-built AWS-shaped EventBridge events (moto's EventBridge
does not emit S3's) delivered to a queue on moto's SQS, as an EventBridge rule's SQS target
delivers them."""

from __future__ import annotations

import functools
from typing import Any

import pytest

from deerflow import Engine
from deerflow.connectors import S3NotificationSource
from deerflow.errors import DefinitionError
from deerflow.events import S3Event
from tests.connectors.conftest import (
    dead_letters,
    eventually,
    finished_runs,
    queue_is_empty,
    send_to,
)
from tests.services import unique_name
from tests.test_docs import ROOT, blocks

pytestmark = pytest.mark.s3
GUIDE = ROOT / "docs" / "guides" / "event-triggers.md"


def eventbridge(
    bucket: str,
    key: str,
    *,
    detail_type: str = "Object Created",
    reason: str = "PutObject",
    sequencer: str | None = None,
    version: str | None = None,
    event_id: str = "17793124-05d4-b198-2fde-7ededc63b103",
    **detail: Any,
) -> dict[str, Any]:
    """An S3 event as EventBridge delivers it (the key is not URL-encoded there)."""
    obj: dict[str, Any] = {"key": key, "size": 5, "etag": "b1946ac92492d2347c6235b4d2611184"}
    if sequencer:
        obj["sequencer"] = sequencer
    if version:
        obj["version-id"] = version
    return {
        "version": "0",
        "id": event_id,
        "detail-type": detail_type,
        "source": "aws.s3",
        "account": "111122223333",
        "time": "2026-03-01T12:00:00Z",
        "region": "us-east-1",
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": obj,
            "request-id": "N4N7GDK58NMKJ12R",
            "requester": "123456789012",
            "reason": reason,
            **detail,
        },
    }


async def test_eventbridge_events_start_runs_with_the_same_dedupe_filters_and_decoding(
    engine: Engine, aws: tuple[Any, Any], moto_endpoint: str
) -> None:
    _, sqs = aws
    bucket = unique_name("lake")
    url = sqs.create_queue(QueueName=unique_name("eventbridge"))["QueueUrl"]

    send = functools.partial(send_to, sqs, url)

    key = "incoming/report+2026:01 final.parquet"  # plain in EventBridge: '+' is a plus
    created = eventbridge(bucket, key, sequencer="0055AED6DCD90281E6")
    send(created)
    send(created)  # EventBridge delivers at least once
    send(eventbridge(bucket, key, sequencer="0055AED6DCD90281E5", event_id="older"))  # stale
    send(
        eventbridge(
            bucket,
            "incoming/big.parquet",
            reason="CompleteMultipartUpload",
            version="v7",
            event_id="multipart",
        )
    )
    send(eventbridge(bucket, "incoming/skip.csv", event_id="filtered"))
    send(
        eventbridge(
            bucket,
            "incoming/old.parquet",
            detail_type="Object Deleted",
            reason="DeleteObject",
            sequencer="0055AED6DCD90281F0",
            event_id="deleted",
            **{"deletion-type": "Delete Marker Created"},
        )
    )
    send({"version": "0", "source": "aws.s3", "detail-type": "Object Created", "id": "bad"})

    trigger = S3Event(
        bucket=bucket,
        prefix="incoming/",
        events=("s3:ObjectCreated:*", "s3:ObjectRemoved:*"),
        filter={"suffix": ".parquet"},
        via="eventbridge",
        queue=url,
        endpoint_url=moto_endpoint,
        wait_seconds=1,
    )
    source = S3NotificationSource(engine, "on_event", trigger, "eventbridge")
    await engine.add_service(source)
    await finished_runs(engine, 3)
    await eventually(lambda: queue_is_empty(sqs, url), what="an empty queue")
    runs = await engine.list_runs()
    assert len(runs) == 3
    by_key = {r.output["event"]["key"]: r.output["event"] for r in runs}
    assert set(by_key) == {key, "incoming/big.parquet", "incoming/old.parquet"}
    assert by_key[key]["event_name"] == "s3:ObjectCreated:Put"
    assert by_key[key]["sequencer"] == "0055AED6DCD90281E6"
    assert by_key[key]["etag"] == "b1946ac92492d2347c6235b4d2611184"
    assert by_key[key]["raw"]["eventbridge"]["detail-type"] == "Object Created"
    big = by_key["incoming/big.parquet"]
    assert big["event_name"] == "s3:ObjectCreated:CompleteMultipartUpload"
    assert big["version_id"] == "v7"
    removed = by_key["incoming/old.parquet"]
    assert removed["event_name"] == "s3:ObjectRemoved:DeleteMarkerCreated"

    (letter,) = await dead_letters(engine)
    assert letter["reason"] == "EventBridge event has no 'detail'"

    # The same object event by S3's own notification is the run it already started.
    await source.stop()
    notification = {
        "eventSource": "aws:s3",
        "eventName": "ObjectCreated:Put",
        "eventTime": "2026-03-01T12:00:00.000Z",
        "s3": {
            "bucket": {"name": bucket},
            "object": {
                "key": "incoming/report%2B2026%3A01+final.parquet",
                "size": 5,
                "sequencer": "0055AED6DCD90281E6",
            },
        },
    }
    send({"Records": [notification]})
    restarted = S3NotificationSource(engine, "on_event", trigger, "eventbridge")
    await engine.add_service(restarted)
    await eventually(lambda: queue_is_empty(sqs, url), what="the notification consumed")
    assert len(await engine.list_runs()) == 3


def test_via_eventbridge_needs_the_queue_its_rule_delivers_to() -> None:
    with pytest.raises(DefinitionError, match="give queue="):
        S3Event(bucket="lake", via="eventbridge")
    with pytest.raises(DefinitionError, match="keep mode='notification'"):
        S3Event(bucket="lake", via="eventbridge", queue="q", mode="poll")
    with pytest.raises(DefinitionError, match="via: Input should be 's3' or 'eventbridge'"):
        S3Event(bucket="lake", via="sns")


def test_the_guides_eventbridge_example_starts_its_run(
    aws: tuple[Any, Any], moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    bucket, queue = unique_name("lake"), unique_name("events")
    declared, example = [
        b
        for b in blocks(GUIDE, "python")
        if 'via="eventbridge"' in b.code
        or (b.not_run is not None and "test_s3_eventbridge.py" in b.not_run)
    ]
    namespace: dict[str, Any] = {"__name__": "guide"}
    for block in (declared, example):
        # The suite's moto is shared by its tests: a bucket and a queue of this test's own.
        code = block.code.replace("data-lake-events", queue).replace("data-lake", bucket)
        exec(compile(code, f"{GUIDE}:{block.line}", "exec"), namespace)
    assert namespace["run"].output["uri"] == f"s3://{bucket}/incoming/day 1.parquet"
