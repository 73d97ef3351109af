"""Guarantee: at-least-once in, exactly one run out — for duplicated triggers of every kind.

* Kafka: each message is produced 1-3 times (same ``id``, different offsets, shuffled); the
  trigger's ``dedupe_key`` names the identity.
* Webhook: each delivery is POSTed 1-4 times concurrently with one ``Idempotency-Key``.
* SQS (S3 notifications): each object event is sent 1-3 times, in shuffled messages, some
  holding a record twice.

Criteria: exactly one run per identity (the history checker: one distinct ``RunRequested`` and
one end per run, the duplicates visible as repeated ids), one effect per run in the sink.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import boto3
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from deerflow import Engine
from deerflow.connectors import (
    DeadLetter,
    KafkaRoute,
    KafkaTriggerSource,
    S3NotificationSource,
    WebhookGateway,
    run_id_for,
    sources_for,
)
from deerflow.connectors._s3records import identity, to_event
from deerflow.events import KafkaEvent, S3Event, WebhookEvent
from deerflow.eventstore.base import Record
from tests.engine.apps.sink import Sink
from tests.reliability.history_checker import check_log
from tests.reliability.support import all_finished, recording_workflow
from tests.services import unique_name


@pytest.fixture
async def engine(sink: Sink) -> AsyncIterator[Engine]:
    """An engine on a fresh in-memory store running :func:`recording_workflow`."""
    async with Engine(f"memory://{unique_name('log')}", [recording_workflow(sink)]) as eng:
        yield eng


def copies(rng: random.Random, identities: list[str], most: int) -> list[str]:
    """Each identity 1..``most`` times, shuffled."""
    sent = [i for i in identities for _ in range(rng.randint(1, most))]
    rng.shuffle(sent)
    return sent


async def assert_one_run_each(engine: Engine, sink: Sink, expected: list[str], sent: int) -> None:
    await all_finished(engine, len(expected), within=60)
    history = await check_log(engine.log, engine.topics.history)
    print(f"{sent} deliveries of {len(expected)} identities: {history.summary()}")
    history.assert_ok(expected, exact=True)
    # Every copy reached the log and the fold ignored it (rather than being lost before).
    assert history.repeats >= sent - len(expected)
    assert sink.effects() == sink.executions() == len(expected)


@pytest.mark.kafka
async def test_kafka_messages_produced_several_times_start_one_run_per_id(
    engine, sink, rng, kafka_bootstrap, kafka_url
):
    topic, group = unique_name("orders"), unique_name("g")
    trigger = KafkaEvent(
        topic=topic,
        consumer_group=group,
        bootstrap_servers=kafka_url,
        dedupe_key=lambda msg: msg["id"],
    )
    wf = recording_workflow(sink)
    wf.add_trigger(trigger)
    ids = [f"order-{i}" for i in range(60)]
    sent = copies(rng, ids, 3)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for n, ident in enumerate(sent):  # random keys: copies land on different partitions
            await producer.send_and_wait(
                topic, orjson.dumps({"id": ident, "copy": n}), key=str(rng.random()).encode()
            )
    finally:
        await producer.stop()
    (source,) = sources_for(engine, [wf])
    await engine.add_service(source)
    expected = [run_id_for(wf.name, "kafka", f"{group}/{topic}/id/{i}") for i in ids]
    await assert_one_run_each(engine, sink, expected, len(sent))


async def test_webhook_deliveries_repeated_concurrently_start_one_run_per_key(engine, sink, rng):
    gateway = WebhookGateway(engine, port=0)
    gateway.add_webhook("on_event", WebhookEvent(path="/hook"))
    await engine.add_service(gateway)
    keys = [f"delivery-{i}" for i in range(40)]
    sent = copies(rng, keys, 4)
    async with aiohttp.ClientSession() as http:

        async def deliver(key: str) -> tuple[str, int, str]:
            async with http.post(
                f"{gateway.url}/hook", json={"key": key}, headers={"Idempotency-Key": key}
            ) as reply:
                return key, reply.status, (await reply.json())["run_id"]

        answers = await asyncio.gather(*(deliver(k) for k in sent))
    assert {status for _, status, _ in answers} == {202}
    run_of: dict[str, set[str]] = {}
    for key, _, run_id in answers:
        run_of.setdefault(key, set()).add(run_id)
    assert all(len(runs) == 1 for runs in run_of.values()), "one key, several run ids"
    await assert_one_run_each(engine, sink, [next(iter(run_of[k])) for k in keys], len(sent))


def s3_record(bucket: str, key: str, sequencer: str) -> dict[str, Any]:
    """An S3 event record as AWS sends it."""
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventName": "ObjectCreated:Put",
        "eventTime": "2026-01-01T00:00:00.000Z",
        "s3": {
            "bucket": {"name": bucket},
            "object": {"key": key, "size": 1, "eTag": "e", "sequencer": sequencer},
        },
    }


@pytest.mark.s3
async def test_sqs_messages_duplicated_and_shuffled_start_one_run_per_object(
    engine, sink, rng, moto_endpoint, monkeypatch
):
    for name, value in (
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        monkeypatch.setenv(name, value)
    sqs = boto3.client("sqs", endpoint_url=moto_endpoint, region_name="us-east-1")
    queue = unique_name("events")
    url = sqs.create_queue(QueueName=queue)["QueueUrl"]
    bucket = unique_name("lake")
    objects = [f"incoming/file-{i}.csv" for i in range(30)]
    records = {key: s3_record(bucket, key, f"{i + 1:016X}") for i, key in enumerate(objects)}
    sent = copies(rng, objects, 3)
    bodies = []
    while sent:  # 1 or 2 records per message; a message may hold one record twice
        take = [sent.pop() for _ in range(min(len(sent), rng.randint(1, 2)))]
        bodies.append({"Records": [records[k] for k in take]})
    for body in bodies:
        sqs.send_message(QueueUrl=url, MessageBody=orjson.dumps(body).decode())
    trigger = S3Event(
        bucket=bucket,
        queue=queue,
        endpoint_url=moto_endpoint,
        wait_seconds=1,
        configure_bucket=False,
    )
    await engine.add_service(S3NotificationSource(engine, "on_event", trigger, "lake"))
    expected = [
        run_id_for("on_event", "s3", identity(to_event(records[k], "lake", 0.0))) for k in objects
    ]
    await assert_one_run_each(engine, sink, expected, sum(len(b["Records"]) for b in bodies))


def test_a_message_whose_dedupe_key_fails_is_dead_lettered_not_retried(sink):
    wf = recording_workflow(sink)
    trigger = KafkaEvent(topic="orders", dedupe_key=lambda msg: msg["id"])
    engine = Engine(f"memory://{unique_name('log')}", [wf])  # interpret needs no I/O
    source = KafkaTriggerSource(
        engine, "g", {"orders": KafkaRoute(wf.name, trigger, "t")}, log=engine.log
    )

    def record(offset: int, value: bytes) -> Record:
        return Record("orders", 0, offset, None, value, (), 0)

    same = [source.interpret(record(n, b'{"id": "o-1", "copy": %d}' % n)) for n in range(2)]
    assert same[0][0].run_id == same[1][0].run_id  # type: ignore[union-attr]
    (missing,) = source.interpret(record(2, b'{"no_id": 1}'))
    (null,) = source.interpret(record(3, b'{"id": null}'))
    assert isinstance(missing, DeadLetter) and "dedupe_key raised KeyError" in missing.reason
    assert isinstance(null, DeadLetter) and "dedupe_key returned None" in null.reason
