"""Dead letters read from the shell: ``dlq list`` in columns that fit the terminal, ``dlq show``
with the source, the reason, the payload (pretty, cut, with its size) and the replay command.
The letters come from real triggers: Kafka (Tansu) and S3 notifications (moto) reading poison."""

from __future__ import annotations

import asyncio
from typing import Any

import boto3
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from deerflow import Workflow
from deerflow.connectors import S3NotificationSource, sources_for
from deerflow.events import KafkaEvent, S3Event
from tests.cli.conftest import Shell
from tests.services import unique_name


@pytest.mark.kafka
async def test_kafka_dead_letters_are_listed_to_fit_and_shown_in_full(
    shell: Shell, kafka_url: str, kafka_bootstrap: str
):
    topic = unique_name("orders")
    intake = Workflow(name="intake")
    intake.task(id="take")(lambda context: None)
    intake.add_trigger(
        KafkaEvent(
            topic=topic,
            consumer_group=unique_name("g"),
            bootstrap_servers=kafka_url,
            filter=lambda message: message["type"] == "order",
        )
    )
    big = {"lines": [{"sku": f"sku-{i}", "qty": i} for i in range(100)]}  # no "type"
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"not json {", key=b"a")
        await producer.send_and_wait(topic, orjson.dumps(big), key=b"b")
    finally:
        await producer.stop()
    (source,) = sources_for(shell.engine, [intake])
    await shell.engine.add_service(source)
    letters = await _letters(shell, 2)
    by_offset = {letter["body"]["offset"]: letter for letter in letters}
    assert sorted(by_offset) == [0, 1]

    code, listed, _ = await shell.run("dlq", "list", columns=80)
    assert code == 0
    lines = listed.splitlines()
    assert lines[0].split() == ["ref", "time", "source", "trigger", "reason", "replayed"]
    assert all(len(line) <= 80 for line in lines)
    assert f"kafka {topic[:8]}" in lines[1] and "…" in lines[1]  # one line per letter, cut
    assert lines[-1] == f"one in full: deerflow dlq show {letters[0]['ref']}"

    code, shown, err = await shell.run("dlq", "show", by_offset[1]["ref"])
    assert code == 0, err
    size = len(orjson.dumps(big))  # as the message was published
    assert shown.splitlines()[:6] == [
        f"dead letter {by_offset[1]['ref']}",
        shown.splitlines()[1],  # when
        f"  source   kafka {topic} partition 0 offset 1",
        f"  trigger  {by_offset[1]['trigger']}",
        f"  reason   {by_offset[1]['reason']}",
        f"  payload  ({size:,} bytes; the first 40 lines shown, --json for all)",
    ]
    assert shown.splitlines()[6:9] == ["    {", '      "lines": [', "        {"]
    assert shown.splitlines()[-1] == (
        f"  replay   deerflow dlq replay {by_offset[1]['ref']} --store {shell.store} --app FILE.py"
    )
    assert len(shown.splitlines()) == 6 + 40 + 1

    code, shown, _ = await shell.run("dlq", "show", by_offset[0]["ref"])
    assert "  reason   not JSON: 'not json {'" in shown
    assert "  payload  (10 bytes)\n    not json {\n" in shown

    code, _, err = await shell.run("dlq", "show", "7:7")
    assert code == 2 and err.startswith("error: no dead letter 7:7")


@pytest.mark.s3
async def test_s3_dead_letters_name_the_object_or_the_queue_message(
    shell: Shell, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
):
    for name, value in (("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test")):
        monkeypatch.setenv(name, value)
    sqs = boto3.client("sqs", endpoint_url=moto_endpoint, region_name="us-east-1")
    bucket = unique_name("lake")
    url = sqs.create_queue(QueueName=unique_name("notes"))["QueueUrl"]
    odd = {  # an S3 record whose eTag is not text: it names its object, but cannot start a run
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": bucket}, "object": {"key": "in/q+1%2F2.csv", "eTag": [1]}},
    }
    sqs.send_message(QueueUrl=url, MessageBody=orjson.dumps({"Records": [odd]}).decode())
    sqs.send_message(QueueUrl=url, MessageBody="this is not an S3 event")
    trigger = S3Event(bucket=bucket, queue=url, endpoint_url=moto_endpoint, wait_seconds=1)
    await shell.engine.add_service(S3NotificationSource(shell.engine, "lake", trigger, "managed"))
    letters = await _letters(shell, 2)

    shown = {}
    for letter in letters:
        code, text, err = await shell.run("dlq", "show", letter["ref"])
        assert code == 0, err
        shown[letter["reason"]] = text.splitlines()
    by_record = shown["record field 'eTag' is not text"]
    assert by_record[2] == f"  source   s3://{bucket}/in/q 1/2.csv"
    (by_body,) = [lines for reason, lines in shown.items() if "not JSON" in reason]
    assert by_body[2].startswith(f"  source   sqs {url} message ")
    assert by_body[5:7] == ["  payload  (23 bytes)", "    this is not an S3 event"]
    assert by_body[-1].startswith("  replay   deerflow dlq replay ")


async def _letters(shell: Shell, count: int) -> list[dict[str, Any]]:
    for _ in range(100):
        letters = await shell.json("dlq", "list")
        assert isinstance(letters, list)
        if len(letters) >= count:
            return letters
        await asyncio.sleep(0.3)
    raise AssertionError(f"fewer than {count} dead letters: {letters}")
