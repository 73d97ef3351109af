"""Kafka as a pipeline's source and sink, on a real broker (Tansu): the consumer pauses when
the pipeline is full, commits only offsets whose items have left the last stage, and a new
member of the group resumes from there; under `deerflow serve` the pipeline runs as a service.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import orjson
import pytest

from deerflow import Backpressure, Pipeline, Workflow, stage
from deerflow.eventstore import EventLog, Message, TopicPartition, open_log
from deerflow.pipeline import KafkaSink, KafkaSource, PipelineRuntime
from tests.pipeline.conftest import Collector, eventually
from tests.services import unique_name

pytestmark = pytest.mark.kafka


@pytest.fixture
async def kafka_log(kafka_url: str):
    log = open_log(kafka_url)
    await log.start()
    try:
        yield log
    finally:
        await log.stop()


async def produce(log: EventLog, topic: str, values, *, key=lambda v: f"k{v['n'] % 8}"):
    await log.append([Message(topic=topic, value=orjson.dumps(v), key=key(v)) for v in values])


async def read_all(log: EventLog, topic: str) -> list[Any]:
    count = await log.partition_count(topic)
    parts = await log.read_partitions({TopicPartition(topic, p): 0 for p in range(count)})
    return [orjson.loads(r.value) for records in parts.values() for r in records]


async def group_offsets(kafka_url: str, group: str, topic: str, partitions: int) -> dict[Any, Any]:
    """The group's committed offsets, asked of the broker (not of the source)."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.structs import TopicPartition as KafkaTP

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_url.removeprefix("kafka://").split("?")[0])
    await admin.start()
    try:
        found = await admin.list_consumer_group_offsets(
            group, partitions=[KafkaTP(topic, p) for p in range(partitions)]
        )
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in found.items() if meta.offset >= 0}


class Enrich(Pipeline):
    @stage(parallelism=4, ordered=True)
    async def score(self, event):
        await asyncio.sleep(0.002)
        return {**event, "score": event["n"] * 10}

    @stage(parallelism=2, batch_size=10, batch_timeout=0.05, ordered=True)
    def tag(self, batch):
        return [{**event, "tagged": True} for event in batch]


async def test_topic_to_topic_pauses_when_full_keeps_key_order_and_commits_everything(
    kafka_log, kafka_url, topic, group
):
    out = unique_name("out")
    await kafka_log.ensure_topic(topic, 4)
    await produce(kafka_log, topic, [{"n": n} for n in range(300)])
    sink = KafkaSink(out, bootstrap_servers=kafka_url)
    source = KafkaSource(topic, group=group, bootstrap_servers=kafka_url, commit_interval=0.2)
    runtime = PipelineRuntime(
        Enrich, source=source, sink=sink, backpressure=Backpressure(max_buffer_size=25)
    )

    async with runtime:
        await eventually(lambda: sink.written >= 300, within=60, what="300 records written")
        await eventually(lambda: sum(source.committed.values()) == 300, what="commits")
    report = runtime.report()

    assert report.items["peak_in_flight"] <= 25
    assert report.source["pauses"] > 0  # 300 waiting records, room for 25: it had to pause
    written = await read_all(kafka_log, out)
    assert sorted(e["n"] for e in written) == list(range(300))
    assert all(e["score"] == e["n"] * 10 and e["tagged"] for e in written)
    by_key: dict[int, list[int]] = {}
    for event in written:  # the sink keys by the source's key: one key, one partition, in order
        by_key.setdefault(event["n"] % 8, []).append(event["n"])
    assert all(ns == sorted(ns) for ns in by_key.values())
    assert sum((await group_offsets(kafka_url, group, topic, 4)).values()) == 300


async def test_an_unfinished_item_holds_back_the_commit_and_is_redelivered_after_a_crash(
    kafka_log, kafka_url, topic, group
):
    await kafka_log.ensure_topic(topic, 1)
    await produce(kafka_log, topic, [{"n": n} for n in range(10)], key=lambda v: None)
    stuck = asyncio.Event()

    class Stalls(Pipeline):
        @stage(parallelism=4)
        async def work(self, event):
            if event["n"] == 3 and not stuck.is_set():
                await asyncio.Event().wait()  # never finishes in this process
            return event["n"]

    first = Collector()
    source = KafkaSource(topic, group=group, bootstrap_servers=kafka_url, commit_interval=0.1)
    runtime = PipelineRuntime(Stalls, source=source, sink=first, drain_timeout=0.5)
    await runtime.start()
    await eventually(lambda: len(first) == 9, within=30, what="9 of 10 items through")
    await asyncio.sleep(0.5)  # several commit intervals
    assert source.committed == {TopicPartition(topic, 0): 3}
    assert await group_offsets(kafka_url, group, topic, 1) == {0: 3}
    report = await runtime.stop()  # item 3 never drains: abandoned, as in a crash

    assert report is not None and "abandoned" in (report.error or "")
    assert await group_offsets(kafka_url, group, topic, 1) == {0: 3}

    stuck.set()
    second = Collector()
    resumed = KafkaSource(topic, group=group, bootstrap_servers=kafka_url, commit_interval=0.1)
    async with PipelineRuntime(Stalls, source=resumed, sink=second):
        await eventually(lambda: len(second) >= 7, within=60, what="redelivery")
        await eventually(
            lambda: resumed.committed.get(TopicPartition(topic, 0)) == 10,
            what="the commit to reach the end",
        )
    # At-least-once: 3..9 come again (4..9 for the second time), 0..2 do not.
    assert sorted(second.items) == list(range(3, 10))


async def test_undecodable_records_are_dead_lettered_and_their_offsets_committed(
    kafka_log, kafka_url, topic, group, letters
):
    await kafka_log.ensure_topic(topic, 1)
    await kafka_log.append(
        [
            Message(topic=topic, value=b'{"n": 0}'),
            Message(topic=topic, value=b"not json"),
            Message(topic=topic, value=b'{"n": 2}'),
        ]
    )

    class Passing(Pipeline):
        @stage
        def work(self, event):
            return event

    got = Collector()
    source = KafkaSource(topic, group=group, bootstrap_servers=kafka_url, commit_interval=0.1)
    async with PipelineRuntime(Passing, source=source, sink=got, dead_letter=letters):
        await eventually(lambda: len(got) == 2 and len(letters) == 1, what="all three handled")
        await eventually(
            lambda: source.committed.get(TopicPartition(topic, 0)) == 3,
            what="commit past the bad record",
        )
    (letter,) = letters.items
    assert letter.stage == "source" and letter.item == "not json"
    assert letter.origin == {"topic": topic, "partition": 0, "offset": 1}
    assert "cannot decode" in letter.reason


async def test_deerflow_serve_runs_a_kafka_pipeline_and_dead_letters_to_the_engine_topic(
    kafka_log, kafka_url, topic, group, monkeypatch
):
    from deerflow.serve import serve

    prefix = unique_name("p").replace("-", "")
    monkeypatch.setenv("DEERFLOW_PREFIX", prefix)
    out = unique_name("out")
    wf = Workflow(name="served_pipeline")

    @wf.pipeline(
        source=KafkaSource(topic, group=group, bootstrap_servers=kafka_url),
        sink=KafkaSink(out, bootstrap_servers=kafka_url),
    )
    class Served(Pipeline):
        @stage
        def check(self, event):
            if event["n"] == 13:
                raise ValueError("unlucky")
            return event

    await kafka_log.ensure_topic(topic, 2)
    await produce(kafka_log, topic, [{"n": n} for n in range(20)])
    store = f"memory://{unique_name('serve')}"
    stop = asyncio.Event()
    serving = asyncio.create_task(serve([wf], store=store, port=0, stop=stop))
    engine_log = open_log(store)
    await engine_log.start()
    try:

        async def written() -> bool:
            return len(await read_all(kafka_log, out)) == 19

        await eventually(written, within=60, what="19 records written by the served pipeline")
        dlq = f"{prefix}.dlq"
        letters = await read_all(engine_log, dlq)
        assert [(d["stage"], d["item"], d["reason"]) for d in letters] == [
            ("check", {"n": 13}, "unlucky")
        ]
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(serving, 30)
        await engine_log.stop()
