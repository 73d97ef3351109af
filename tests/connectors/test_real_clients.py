"""Kafka triggers fed by the clients users publish with: confluent-kafka (librdkafka) and, on
Apache Kafka, Kafka's own console producer (Java, from the broker's jars)."""

from __future__ import annotations

import asyncio
from asyncio.subprocess import PIPE, STDOUT

import orjson
import pytest
from confluent_kafka import Producer

from deerflow import Engine
from deerflow.connectors import KafkaTriggerSource, sources_for
from deerflow.events import KafkaEvent
from deerflow.testing import ServiceUnavailable
from deerflow.testing.apache_kafka import console_producer
from tests.connectors.conftest import finished_runs, recording_workflow
from tests.services import kafka_broker, unavailable, unique_name

pytestmark = pytest.mark.kafka


async def start_trigger(engine: Engine, topic: str, kafka_url: str) -> None:
    wf = recording_workflow()
    wf.add_trigger(
        KafkaEvent(topic=topic, consumer_group=unique_name("g"), bootstrap_servers=kafka_url)
    )
    [source] = sources_for(engine, [wf])
    assert isinstance(source, KafkaTriggerSource)
    await engine.add_service(source)


async def runs_by_n(engine: Engine, count: int) -> list[int]:
    runs = await finished_runs(engine, count)
    assert all(run.ok for run in runs), [run.error for run in runs]
    return sorted(run.output["event"]["message"]["n"] for run in runs)


async def test_messages_from_confluent_kafka_start_one_run_each(
    engine: Engine, kafka_bootstrap: str, kafka_url: str
) -> None:
    topic = unique_name("confluent")
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "acks": "all"})
    for n in range(5):
        producer.produce(topic, orjson.dumps({"n": n}), key=f"k{n}".encode())
    assert producer.flush(30) == 0
    await start_trigger(engine, topic, kafka_url)
    assert await runs_by_n(engine, 5) == list(range(5))
    runs = await engine.list_runs()
    assert sorted(run.output["event"]["key"] for run in runs) == [f"k{n}" for n in range(5)]


async def test_messages_from_kafkas_console_producer_start_one_run_each(
    engine: Engine, kafka_bootstrap: str, kafka_url: str
) -> None:
    if kafka_broker() != "apache":
        pytest.skip("the console producer comes with Apache Kafka (DEERFLOW_KAFKA_BROKER=apache)")
    try:
        command = console_producer(
            kafka_bootstrap, (topic := unique_name("console")), "--property", "parse.key=true"
        )
    except ServiceUnavailable as exc:
        unavailable(str(exc))
    lines = "".join(f"k{n}\t{orjson.dumps({'n': n}).decode()}\n" for n in range(3))
    producer = await asyncio.create_subprocess_exec(
        *command, stdin=PIPE, stdout=PIPE, stderr=STDOUT
    )
    output, _ = await asyncio.wait_for(producer.communicate(lines.encode()), 120)
    assert producer.returncode == 0, output.decode(errors="replace")[-2000:]
    await start_trigger(engine, topic, kafka_url)
    assert await runs_by_n(engine, 3) == [0, 1, 2]
    runs = await engine.list_runs()
    assert sorted(run.output["event"]["key"] for run in runs) == ["k0", "k1", "k2"]
