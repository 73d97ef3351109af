"""Kafka topic triggers against a real broker (Tansu): one run per message, poison to the DLQ."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from deerflow import Engine, Workflow
from deerflow.connectors import KafkaRoute, KafkaTriggerSource, sources_for
from deerflow.connectors.kafka import new_replay_nonce, replay, source_log_for
from deerflow.events import KafkaEvent
from tests.connectors.conftest import (
    dead_letters,
    eventually,
    finished_runs,
    recording_workflow,
)
from tests.services import unique_name

pytestmark = pytest.mark.kafka


@pytest.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    """A plain producer, as a user's service would publish."""
    prod = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await prod.start()
    try:
        yield prod
    finally:
        await prod.stop()


async def publish(
    producer: AIOKafkaProducer, topic: str, values: list[Any], *, raw: bool = False
) -> None:
    for i, value in enumerate(values):
        data = value if raw else orjson.dumps(value)
        await producer.send_and_wait(
            topic, data, key=f"k{i}".encode(), headers=[("origin", b"test")]
        )


def kafka_source(engine: Engine, trigger: KafkaEvent, name: str = "t") -> KafkaTriggerSource:
    sources = sources_for(engine, [_with(trigger)])
    assert len(sources) == 1 and isinstance(sources[0], KafkaTriggerSource)
    return sources[0]


def _with(trigger: KafkaEvent) -> Workflow:
    wf = recording_workflow()
    wf.add_trigger(trigger)
    return wf


async def test_each_accepted_message_starts_exactly_one_run_and_rereading_starts_none(
    engine: Engine, producer: AIOKafkaProducer, kafka_url: str
) -> None:
    topic = unique_name("data-events")
    trigger = KafkaEvent(
        topic=topic,
        consumer_group=unique_name("g"),
        bootstrap_servers=kafka_url,
        filter=lambda msg: msg["type"] == "new_data",
    )
    messages = [{"type": "new_data", "n": i} for i in range(6)] + [{"type": "other", "n": 99}]
    await publish(producer, topic, messages)
    source = kafka_source(engine, trigger)
    await engine.add_service(source)

    runs = await finished_runs(engine, 6)
    assert len(runs) == 6
    outputs = [r.output["event"] for r in runs]
    assert sorted(o["message"]["n"] for o in outputs) == list(range(6))
    first = next(o for o in outputs if o["message"]["n"] == 0)
    assert first["type"] == "kafka" and first["topic"] == topic
    assert first["key"] == "k0" and first["headers"] == {"origin": "test"}
    assert isinstance(first["partition"], int) and isinstance(first["offset"], int)
    assert first["timestamp"] > 0 and orjson.loads(first["raw"]["value"]) == messages[0]

    # Re-reading the whole topic (a rewind without --new-runs) starts nothing new ...
    again = await replay(source, from_offset=0)
    assert again == 6
    await asyncio.sleep(0.3)
    assert len(await engine.list_runs()) == 6
    # ... and with a fresh nonce (--new-runs) every accepted message starts one more run.
    fresh = KafkaTriggerSource(
        engine, source.group, source.routes, log=source.log, replay_nonce=new_replay_nonce()
    )
    assert await replay(fresh, from_offset=0) == 6
    assert len(await finished_runs(engine, 12)) == 12


async def test_poison_messages_go_to_the_dead_letter_topic_and_the_partition_keeps_flowing(
    engine: Engine, producer: AIOKafkaProducer, kafka_url: str
) -> None:
    topic = unique_name("mixed")
    admin_log, _ = source_log_for(engine, kafka_url)
    await admin_log.start()
    await admin_log.ensure_topic(topic, 1)  # one partition: poison sits between good ones
    await admin_log.stop()
    trigger = KafkaEvent(
        topic=topic,
        consumer_group=unique_name("g"),
        bootstrap_servers=kafka_url,
        filter=lambda msg: msg["type"] == "new_data",
    )
    await publish(producer, topic, [{"type": "new_data", "n": 1}])
    await publish(producer, topic, [b"not json {"], raw=True)
    await publish(producer, topic, [{"no_type": True}, {"type": "new_data", "n": 2}])
    await engine.add_service(kafka_source(engine, trigger))

    runs = await finished_runs(engine, 2)
    assert sorted(r.output["event"]["message"]["n"] for r in runs) == [1, 2]
    letters: list[dict[str, Any]] = []

    async def two_letters() -> bool:
        letters[:] = await dead_letters(engine)
        return len(letters) >= 2

    await eventually(two_letters, what="two dead letters")
    by_offset = {letter["offset"]: letter for letter in letters}
    assert sorted(by_offset) == [1, 2]
    assert by_offset[1]["reason"] == "not JSON: 'not json {'"
    assert by_offset[1]["value"] == "not json {"
    assert by_offset[2]["reason"].startswith("filter raised KeyError")
    for letter in letters:
        assert letter["topic"] == topic and letter["partition"] == 0
        assert letter["headers"] == {"origin": "test"} and letter["source"] == "kafka"


async def test_a_saturated_engine_pauses_the_consumer_instead_of_buffering(
    producer: AIOKafkaProducer, kafka_url: str
) -> None:
    wf = Workflow(name="slow")
    gate = asyncio.Event()

    @wf.task(id="wait")
    async def wait(context: Any) -> int:
        await gate.wait()
        return int(context.trigger_event.message["n"])

    topic = unique_name("burst")
    wf.add_trigger(
        KafkaEvent(
            topic=topic, consumer_group=unique_name("g"), bootstrap_servers=kafka_url, batch_size=2
        )
    )
    async with Engine(f"memory://{unique_name('log')}", [wf]) as engine:
        (source,) = sources_for(engine, [wf], max_running=3)
        await engine.add_service(source)
        await publish(producer, topic, [{"n": i} for i in range(12)])

        async def some_runs() -> bool:
            return len(await engine.list_runs()) >= 3

        await eventually(some_runs, what="the first runs")
        await asyncio.sleep(1.0)
        # At most one batch past the limit was requested while the runs are blocked.
        assert 3 <= len(await engine.list_runs()) <= 3 + 2
        gate.set()
        runs = await finished_runs(engine, 12)
        assert sorted(r.output for r in runs) == list(range(12))


async def test_on_a_kafka_store_the_trigger_reads_the_stores_own_cluster(
    kafka_url: str, producer: AIOKafkaProducer
) -> None:
    topic = unique_name("same-cluster")
    wf = recording_workflow("on_kafka_store")
    wf.add_trigger(KafkaEvent(topic=topic, consumer_group=unique_name("g")))
    async with Engine(kafka_url, [wf]) as engine:
        (source,) = sources_for(engine, [wf])
        assert isinstance(source, KafkaTriggerSource) and source.log is engine.log
        await engine.add_service(source)
        await publish(producer, topic, [{"n": 1}, {"n": 2}])
        runs = await finished_runs(engine, 2, within=40)
        assert sorted(r.output["event"]["message"]["n"] for r in runs) == [1, 2]


async def test_two_triggers_on_one_topic_in_one_group_are_refused(engine: Engine) -> None:
    a, b = recording_workflow("a"), recording_workflow("b")
    a.add_trigger(KafkaEvent(topic="t", consumer_group="g", bootstrap_servers="x:1"))
    b.add_trigger(KafkaEvent(topic="t", consumer_group="g", bootstrap_servers="x:1"))
    with pytest.raises(Exception, match="different consumer_group"):
        sources_for(engine, [a, b])


async def test_routes_of_one_group_share_a_consumer(engine: Engine) -> None:
    a, b = recording_workflow("a"), recording_workflow("b")
    a.add_trigger(KafkaEvent(topic="t1", consumer_group="g", bootstrap_servers="x:1"))
    b.add_trigger(KafkaEvent(topic="t2", consumer_group="g", bootstrap_servers="x:1"))
    (source,) = sources_for(engine, [a, b])
    assert isinstance(source, KafkaTriggerSource)
    assert source.routes == {
        "t1": KafkaRoute("a", a.triggers[0], "a.kafka.t1"),
        "t2": KafkaRoute("b", b.triggers[0], "b.kafka.t2"),
    }


async def test_members_of_one_group_share_the_partitions_and_each_message_runs_once(
    producer: AIOKafkaProducer, kafka_url: str
) -> None:
    topic, group = unique_name("shared"), unique_name("g")
    wf = recording_workflow("shared")
    wf.add_trigger(KafkaEvent(topic=topic, consumer_group=group, bootstrap_servers=kafka_url))
    store = f"memory://{unique_name('log')}"  # one store, two "processes"
    async with Engine(store, [wf]) as one, Engine(store, [wf], orchestrate=False) as two:
        (first,) = sources_for(one, [wf])
        (second,) = sources_for(two, [wf])
        assert isinstance(first, KafkaTriggerSource) and isinstance(second, KafkaTriggerSource)
        await one.add_service(first)
        await two.add_service(second)

        async def both_assigned() -> bool:
            a, b = first._consumer, second._consumer
            return bool(a and b and a.assignment() and b.assignment())

        await eventually(both_assigned, 30, "both members to get partitions")
        await publish(producer, topic, [{"n": i} for i in range(40)])
        runs = await finished_runs(one, 40)
        assert sorted(r.output["event"]["message"]["n"] for r in runs) == list(range(40))
        assert first.requested > 0 and second.requested > 0
        assert first.requested + second.requested == 40
