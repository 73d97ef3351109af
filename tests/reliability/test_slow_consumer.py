"""Guarantee: a slow consumer under a fast producer stays bounded, catches up, and processes
each item exactly once — without a rebalance loop.

Messages are produced at once onto a Kafka topic whose trigger starts runs of a task slower
than the consumer group's session timeout (1 s here) and than any poll interval. Criteria:
running runs never exceed ``max_running`` plus one trigger batch; the worker never runs more
than its concurrency; afterwards the trigger's lag and the task queue are drained; every
message ran exactly once (sink: one effect and one execution each); the worker and the
orchestrator were each assigned their partitions once (no rebalance loop).
"""

from __future__ import annotations

import asyncio
import logging
import time

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from deerflow import Engine
from deerflow.connectors import KafkaTriggerSource, sources_for
from deerflow.events import KafkaEvent
from tests.engine.apps.sink import Sink
from tests.reliability.history_checker import check_log
from tests.reliability.support import all_finished, recording_workflow
from tests.services import unique_name

pytestmark = pytest.mark.kafka

MAX_RUNNING, BATCH, CONCURRENCY = 16, 10, 8


async def fast_producer_slow_consumer(
    kafka_bootstrap: str,
    kafka_url: str,
    sink: Sink,
    caplog: pytest.LogCaptureFixture,
    messages: int,
) -> None:
    caplog.set_level(logging.DEBUG, logger="deerflow")
    topic = unique_name("firehose")
    wf = recording_workflow(sink, pause=1.2)  # slower than the 1 s session timeout
    wf.add_trigger(KafkaEvent(topic=topic, consumer_group=unique_name("g"), batch_size=BATCH))
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        sent = [
            await producer.send(topic, orjson.dumps({"n": i}), key=str(i).encode())
            for i in range(messages)
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()

    async with Engine(kafka_url, [wf], concurrency=CONCURRENCY) as engine:
        (source,) = sources_for(engine, [wf], max_running=MAX_RUNNING)
        assert isinstance(source, KafkaTriggerSource)
        began = time.monotonic()
        await engine.add_service(source)
        peaks = {"running": 0, "inflight": 0}

        async def watch() -> None:
            assert source.load is not None and engine.worker is not None
            while True:
                peaks["running"] = max(peaks["running"], len(source.load.running))
                # attempts holding a slot: running, or appending their outcome
                peaks["inflight"] = max(peaks["inflight"], len(engine.worker._holding))
                await asyncio.sleep(0.02)

        watcher = asyncio.create_task(watch())
        await all_finished(engine, messages, within=messages * 1.2 / CONCURRENCY + 60)
        watcher.cancel()
        elapsed = time.monotonic() - began
        await asyncio.sleep(0.5)  # one more poll so lags reflect the end
        assert source._consumer is not None and engine.worker is not None
        lag = sum(source._consumer.lag(tp) or 0 for tp in source._consumer.assignment())
        backlog = engine.worker.backlog()
        history = await check_log(engine.log, engine.topics.history)
    joins = {
        "worker": sum(
            "assigned" in r.getMessage() for r in caplog.records if r.name == "deerflow.worker"
        ),
        "orchestrator": sum("orchestrator owns" in r.getMessage() for r in caplog.records),
    }
    print(
        f"{messages} messages in {elapsed:.1f}s: peak {peaks['running']} running runs, "
        f"peak {peaks['inflight']} tasks in flight, lag {lag}, backlog {backlog}, "
        f"assignments {joins}; {history.summary()}"
    )
    assert peaks["running"] <= MAX_RUNNING + BATCH
    assert peaks["inflight"] <= CONCURRENCY
    assert lag == 0 and backlog == 0
    history.assert_ok(exact=True)
    assert len(history.runs) == messages
    assert sink.effects() == sink.executions() == messages
    assert joins["worker"] <= 2 and joins["orchestrator"] <= 2, f"rebalance loop: {joins}"


async def test_a_slow_consumer_stays_bounded_and_catches_up_exactly_once(
    kafka_bootstrap, kafka_url, sink, caplog
):
    await fast_producer_slow_consumer(kafka_bootstrap, kafka_url, sink, caplog, messages=60)


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_full_size_slow_consumer_with_1000_messages(kafka_bootstrap, kafka_url, sink, caplog):
    await fast_producer_slow_consumer(kafka_bootstrap, kafka_url, sink, caplog, messages=1000)
