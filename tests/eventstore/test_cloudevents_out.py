"""``EventStore(cloudevents=True)``: what it publishes is read by a plain Kafka consumer with the
``cloudevents`` SDK (as a Knative or Argo Events source would), and by the store itself."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaConsumer
from cloudevents.core.bindings import kafka as ce_kafka

from deerflow.eventstore import EventStore
from tests.services import unique_name


@pytest.mark.kafka
async def test_published_events_are_structured_cloudevents_that_the_store_reads_back(
    kafka_bootstrap: str, kafka_url: str
) -> None:
    topic = unique_name("orders-events")
    when = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    async with EventStore(kafka_url, topic, partitions=1, cloudevents=True) as store:
        first = await store.publish_async(
            {"type": "OrderCreated", "payload": {"total": 30}, "timestamp": when},
            stream="order-7",
            correlation_id="run-1",
        )
        await store.publish_async("OrderPaid", {"by": "card"}, stream="order-7")
        stored = await store.read_async("order-7")
    assert [(e.type, e.sequence, e.data) for e in stored] == [
        ("OrderCreated", 1, {"total": 30}),
        ("OrderPaid", 2, {"by": "card"}),
    ]
    assert stored[0].id == first.id and stored[0].correlation_id == "run-1"
    assert stored[0].timestamp == when and stored[0].source == first.source

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=10_000, max_records=2)
    finally:
        await consumer.stop()
    records = [r for part in batch.values() for r in part]
    assert len(records) == 2
    record = records[0]
    headers = dict(record.headers)
    assert headers["content-type"] == b"application/cloudevents+json"
    event = ce_kafka.from_kafka_event(ce_kafka.KafkaMessage(headers, record.key, record.value))
    assert event.get_id() == first.id
    assert event.get_type() == "OrderCreated"
    assert first.source and event.get_source() == first.source
    assert event.get_subject() == "order-7"
    assert event.get_time() == when
    assert event.get_data() == {"total": 30}
    assert event.get_extension("sequence") == 1
    assert event.get_extension("correlationid") == "run-1"


async def test_the_option_changes_the_records_not_what_the_store_reads() -> None:
    url = f"memory://{unique_name('ce-store')}"
    async with EventStore(url, "events", cloudevents=True) as store:
        await store.publish_async("Opened", {"n": 1}, stream="acct-1", id="e-1")
        await store.append_async("acct-1", [{"type": "Deposited", "data": {"n": 2}}] * 2)
    async with EventStore(url, "events") as plain:
        events = await plain.read_async("acct-1")
        await plain.publish_async("Closed", None, stream="acct-1")
        assert [(e.type, e.sequence) for e in await plain.read_async("acct-1")] == [
            ("Opened", 1),
            ("Deposited", 2),
            ("Deposited", 3),
            ("Closed", 4),
        ]
    assert events[0].id == "e-1" and events[0].data == {"n": 1}
