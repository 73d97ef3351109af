"""What holds only on a real Kafka broker: the Kafka log's settings and the broker features
deerflow's design leans on (idempotent producer, retention, compaction, ``delete_records``,
``end_offsets``, group sessions of the length production brokers accept).

Each test runs on Apache Kafka (``DEERFLOW_KAFKA_BROKER=apache``, or any real Kafka given by
``DEERFLOW_KAFKA_BOOTSTRAP``); those using what Tansu lacks skip there, naming it. So does the
Kafka member's own behaviour across an eager rebalance (a poll that spans a revoke), on both.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from deerflow.eventstore import Message, open_log
from deerflow.eventstore.kafka import KafkaEventLog
from deerflow.log.base import EventLog, GroupConsumer
from deerflow.log.base import TopicPartition as LogPartition
from tests.services import real_kafka_only, unique_name

pytestmark = pytest.mark.kafka


@pytest.fixture
async def admin(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaAdminClient]:
    client = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await client.start()
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def log(kafka_url: str) -> AsyncIterator[EventLog]:
    async with open_log(kafka_url) as opened:
        yield opened


async def topic_config(admin: AIOKafkaAdminClient, topic: str) -> dict[str, str]:
    [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    [(_code, _message, _type, _name, entries)] = response.resources
    return {name: value for name, value, *_ in entries}


async def wait_for(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    """Poll ``check`` until it returns true."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.5)


async def test_the_idempotent_producer_appends_and_reads_back_each_message_once(
    kafka_url: str, topic: str
) -> None:
    real_kafka_only("fails aiokafka's idempotent producer at start (InitProducerId v0)")
    async with open_log(f"{kafka_url}&idempotent=true") as log:
        assert isinstance(log, KafkaEventLog) and log.settings.idempotent
        await log.ensure_topic(topic, 1)
        placed = await log.append([Message(topic, b"%d" % i, key="k") for i in range(50)])
        assert [offset for _, offset in placed] == list(range(50))
        records = await log.read_partition(LogPartition(topic, 0))
    assert [r.value for r in records] == [b"%d" % i for i in range(50)]


async def test_histories_are_created_with_unlimited_retention(
    log: EventLog, admin: AIOKafkaAdminClient, topic: str
) -> None:
    real_kafka_only("has no retention, so no retention.ms to set")
    await log.ensure_topic(topic, 2, keep_forever=True)
    config = await topic_config(admin, topic)
    assert config["retention.ms"] == "-1"
    assert config["cleanup.policy"] == "delete"


async def test_retention_deletes_old_records_and_the_log_reads_from_the_new_start(
    log: EventLog, admin: AIOKafkaAdminClient, topic: str, kafka_bootstrap: str
) -> None:
    real_kafka_only("has no retention")
    configs = {"retention.ms": "500", "segment.ms": "100"}
    await admin.create_topics([NewTopic(topic, 1, 1, topic_configs=configs)])
    tp = LogPartition(topic, 0)
    await log.append([Message(topic, b"old", partition=0) for _ in range(5)])
    await asyncio.sleep(0.6)
    # A record after segment.ms rolls the segment (only closed segments expire); stamped an
    # hour ahead, it does not expire itself, so the partition keeps one record.
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        ahead = int(time.time() * 1000) + 3_600_000
        await producer.send_and_wait(topic, b"new", partition=0, timestamp_ms=ahead)
    finally:
        await producer.stop()

    async def expired() -> bool:
        records = await asyncio.wait_for(log.read_partition(tp), 10)
        return [(r.offset, r.value) for r in records] == [(5, b"new")]

    await wait_for(expired, 30, "the 5 old records expired")


async def test_a_reader_from_records_all_deleted_finds_the_partition_empty(
    log: EventLog, admin: AIOKafkaAdminClient, topic: str
) -> None:
    real_kafka_only("has no delete_records (the connection drops)")
    await log.ensure_topic(topic, 1)
    await log.append([Message(topic, b"%d" % i, partition=0) for i in range(10)])
    await admin.delete_records({TopicPartition(topic, 0): RecordsToDelete(10)}, timeout_ms=10_000)
    # Retention does the same to a partition whose every record expired.
    assert await asyncio.wait_for(log.read_partition(LogPartition(topic, 0)), 10) == []


async def test_delete_records_moves_the_log_start_and_readers_start_there(
    log: EventLog, admin: AIOKafkaAdminClient, topic: str, kafka_bootstrap: str
) -> None:
    real_kafka_only("has no delete_records (the connection drops)")
    await log.ensure_topic(topic, 1)
    await log.append([Message(topic, b"%d" % i, partition=0) for i in range(10)])
    await admin.delete_records({TopicPartition(topic, 0): RecordsToDelete(6)}, timeout_ms=10_000)
    records = await log.read_partition(LogPartition(topic, 0))
    assert [(r.offset, r.value) for r in records] == [(i, b"%d" % i) for i in range(6, 10)]


async def test_a_compacted_topic_keeps_the_last_record_of_each_key(
    log: EventLog, admin: AIOKafkaAdminClient, topic: str
) -> None:
    real_kafka_only("has no log compaction")
    configs = {
        "cleanup.policy": "compact",
        "segment.ms": "100",
        "min.cleanable.dirty.ratio": "0.01",
        "delete.retention.ms": "100",
    }
    await admin.create_topics([NewTopic(topic, 1, 1, topic_configs=configs)])
    tp = LogPartition(topic, 0)
    for version in range(4):
        await log.append(
            [
                Message(topic, b"%s-v%d" % (k.encode(), version), key=k, partition=0)
                for k in ("a", "b", "c")
            ]
        )
    await log.append([Message(topic, b"", key="b", partition=0)])  # a tombstone
    await asyncio.sleep(0.3)
    # Only closed segments are compacted: a later record rolls the one holding the versions.
    await log.append([Message(topic, b"roll", key="z", partition=0)])

    async def compacted() -> bool:
        return len(await log.read_partition(tp)) <= 4

    await wait_for(compacted, 60, "the topic was compacted")
    survivors = {r.key: (r.offset, r.value) for r in await log.read_partition(tp)}
    assert survivors["a"] == (9, b"a-v3") and survivors["c"] == (11, b"c-v3")
    assert survivors["z"][1] == b"roll"
    # The tombstone outlives delete.retention.ms only until the next pass: either way, no
    # older version of "b" is left.
    assert survivors.get("b", (12, b""))[1] == b""


async def test_end_offsets_count_every_record_of_multi_record_batches(
    log: EventLog, topic: str, kafka_bootstrap: str
) -> None:
    real_kafka_only("answers ListOffsets(latest) with the last batch's base offset + 1")
    await log.ensure_topic(topic, 1)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=50)
    await producer.start()
    try:
        batch = producer.create_batch()
        for i in range(7):
            batch.append(key=None, value=b"%d" % i, timestamp=None)
        await (await producer.send_batch(batch, topic, partition=0))
        await log.append([Message(topic, b"x", partition=0) for _ in range(5)])  # in flight
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, 0)])
    finally:
        await consumer.stop()
    assert ends[TopicPartition(topic, 0)] == 12
    assert isinstance(log, KafkaEventLog)
    assert await log.true_ends([LogPartition(topic, 0)]) == {LogPartition(topic, 0): 12}


async def test_groups_with_production_session_timeouts_share_and_hand_over_partitions(
    kafka_bootstrap: str, topic: str, group: str
) -> None:
    real_kafka_only("is run with 1 s group sessions; 6 s ones would slow every join")
    url = f"kafka://{kafka_bootstrap}?session_timeout_ms=6000&heartbeat_interval_ms=2000"
    async with open_log(url) as first_log, open_log(url) as second_log:
        await first_log.ensure_topic(topic, 4)
        first = first_log.consumer(group, [topic])
        await first.start()
        assert len(first.assignment()) == 4
        second = second_log.consumer(group, [topic])
        started = time.monotonic()
        await asyncio.gather(second.start(), first.poll(timeout=8))
        await wait_for_split(first, second)
        joined_in = time.monotonic() - started
        await first.stop()  # leaves the group: no session to wait out

        async def all_moved() -> bool:
            await second.poll(timeout=0.5)
            return len(second.assignment()) == 4

        await wait_for(all_moved, 15, "the leaver's partitions moved")
    assert joined_in < 12, joined_in


async def wait_for_split(first: GroupConsumer, second: GroupConsumer) -> None:
    """Poll both members until they hold two partitions each."""

    async def split() -> bool:
        await asyncio.gather(first.poll(timeout=0.3), second.poll(timeout=0.3))
        return len(first.assignment()) == len(second.assignment()) == 2

    await wait_for(split, 20, "the two members split 4 partitions")


async def test_a_poll_that_spans_a_revoke_delivers_nothing_it_fetched_before(
    log: EventLog, kafka_url: str
) -> None:
    """A member's partitions are revoked and given straight back while one of its polls is
    out: that poll must not deliver what it fetched before the revoke (the listener was told
    unfinished records go to the next owner, and the member restarts at the committed offset),
    or they come twice and, committed by what ran them, past records the listener dropped.

    Runs on Tansu too. The poll is held at its await after the fetch (where a slow broker
    answer holds it) until the listener has seen the revoke and the new assignment.
    """
    topic, other = unique_name("topic"), unique_name("other")
    group = unique_name("group")
    await log.ensure_topic(topic, 1)
    await log.ensure_topic(other, 1)
    tp = LogPartition(topic, 0)
    heard: list[str] = []

    class Listener:
        async def on_assigned(self, partitions: frozenset[LogPartition]) -> None:
            heard.append("assigned")

        async def on_revoked(self, partitions: frozenset[LogPartition]) -> None:
            heard.append("revoked")

    member = log.consumer(group, [topic], listener=Listener())
    await member.start()
    try:
        while tp not in member.assignment():
            assert await member.poll(timeout=0.1) == []
        await log.append([Message(topic, b"%d" % i, partition=0) for i in range(3)])
        fetched, release = asyncio.Event(), asyncio.Event()
        follow = member._follow_deleted  # type: ignore[attr-defined]

        async def held(consumer: object, batches: dict[object, list[object]]) -> None:
            if any(batches.values()):
                fetched.set()
                await release.wait()
            await follow(consumer, batches)

        member._follow_deleted = held  # type: ignore[attr-defined]
        spanning = asyncio.create_task(member.poll(timeout=10))
        await asyncio.wait_for(fetched.wait(), 20)
        before = len(heard)
        # Another member of the group, for another topic: the member's partition is revoked
        # and given straight back to it.
        async with log.consumer(group, [other]) as joined:
            deadline = time.monotonic() + 30
            while heard[before:] != ["revoked", "assigned"]:
                assert time.monotonic() < deadline, heard
                await joined.poll(timeout=0.1)
            release.set()
            delivered = await spanning
            while True:  # until all came and nothing more (a duplicate) follows
                more = await member.poll(timeout=0.5)
                delivered += more
                if len(delivered) >= 3 and not more:
                    break
                assert time.monotonic() < deadline + 30, delivered
    finally:
        await member.stop()
    assert sorted(r.offset for r in delivered) == [0, 1, 2]  # each once, from the start
