"""The EventStore on every backend: publish, read, replay, subscribe, fold, concurrency.

Each test runs on memory, SQLite and Kafka (Tansu) through the engine suite's ``store``
fixture; the store gets a topic of its own per test.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from deerflow import Engine, EventStore, Workflow
from deerflow.core.definition import TaskDef
from deerflow.errors import ConcurrencyConflict
from deerflow.eventstore import StoredEvent, TopicPartition
from deerflow.log import open_log
from deerflow.runtime._context import TaskDispatch
from deerflow.runtime._worker import run_attempt
from tests.engine.conftest import store  # noqa: F401 - the engine suite's three stores
from tests.example_runs import load_example
from tests.services import unique_name


@pytest.fixture
async def events(store: str):
    """A started EventStore on this test's backend, on a topic of its own."""
    async with EventStore(store, topic=unique_name("events")) as event_store:
        yield event_store


class PaymentProcessed(BaseModel):
    order_id: uuid.UUID
    status: str


async def test_published_events_come_back_in_order_with_ids_sequences_and_times(events):
    order_id = uuid.uuid4()
    created = await events.publish_async(
        {
            "type": "OrderCreated",
            "payload": {"id": order_id, "items": ["book"]},
            "timestamp": datetime(2026, 11, 29, 12, 0),  # naive, as datetime.utcnow() gives
            "stream": f"order-{order_id}",
        }
    )
    paid = await events.publish_async(
        PaymentProcessed(order_id=order_id, status="ok"), stream=created.stream
    )
    stored = await events.read_async(f"order-{order_id}")
    assert [e.type for e in stored] == ["OrderCreated", "PaymentProcessed"]
    assert [e.sequence for e in stored] == [1, 2]
    assert stored[0].payload == {"id": str(order_id), "items": ["book"]}
    assert stored[0].timestamp == datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    assert stored[1].data == {"order_id": str(order_id), "status": "ok"}
    assert [e.id for e in stored] == [created.id, paid.id] and created.id != paid.id
    # Outside tasks and handlers a chain starts here: the first event is its own correlation.
    assert stored[0].correlation_id == created.id and stored[0].causation_id is None
    assert stored[0].partition == stored[1].partition and stored[0].offset < stored[1].offset


async def test_sync_publishes_from_threads_and_async_publishes_share_one_numbering(events):
    errors: list[BaseException] = []

    def publisher(n: int) -> None:
        try:
            for i in range(10):
                events.publish("Tick", {"thread": n, "i": i}, stream="clock")
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=publisher, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for i in range(10):
        await events.publish_async("Tick", {"thread": "loop", "i": i}, stream="clock")
    await asyncio.to_thread(lambda: [thread.join() for thread in threads])  # type: ignore[func-returns-value]
    assert errors == []
    stored = await events.read_async("clock")
    assert [e.sequence for e in stored] == list(range(1, 41))
    with pytest.raises(RuntimeError, match="publish_async"):
        events.publish("Tick", {}, stream="clock")  # blocking inside the event loop


async def test_an_append_at_a_stale_version_raises_and_changes_nothing(events):
    await events.append_async(
        "cart-1",
        [{"type": "ItemAdded", "data": {"sku": "a"}}, {"type": "ItemAdded", "data": {"sku": "b"}}],
        expected_version=0,
    )
    with pytest.raises(ConcurrencyConflict, match="version 2, not the expected 1"):
        await events.append_async("cart-1", [{"type": "ItemRemoved"}], expected_version=1)
    with pytest.raises(ConcurrencyConflict):
        await events.append_async("cart-1", [{"type": "CartOpened"}], expected_version=0)
    done = await events.append_async("cart-1", [{"type": "CheckedOut"}], expected_version=2)
    assert done[0].sequence == 3
    assert [e.type for e in await events.read_async("cart-1")] == [
        "ItemAdded",
        "ItemAdded",
        "CheckedOut",
    ]


async def test_a_writer_with_a_stale_view_is_refused_and_readers_agree(store):
    topic = unique_name("stale")
    # Two stores on one log behave as two processes: each has its own view of the stream.
    async with EventStore(store, topic=topic) as first, EventStore(store, topic=topic) as second:
        await first.publish_async("Opened", stream="account")
        loaded = await first.load_async("account", lambda n, e: n + 1, 0)
        assert loaded.version == 1
        await second.publish_async("Deposited", {"amount": 5}, stream="account")
        with pytest.raises(ConcurrencyConflict):
            await first.append_async(
                "account",
                [{"type": "Withdrawn", "data": {"amount": 9}}],
                expected_version=loaded.version,
            )
        audited = await first.publish_async("Audited", stream="account")  # no expectation
        assert audited.sequence == 3
        for reader in (first, second):
            stored = await reader.read_async("account")
            assert [(e.type, e.sequence) for e in stored] == [
                ("Opened", 1),
                ("Deposited", 2),
                ("Audited", 3),
            ]


async def test_concurrent_writers_in_two_stores_never_share_or_skip_a_version(store):
    topic = unique_name("contended")
    conflicts = 0

    async def writer(event_store: EventStore, name: str) -> None:
        nonlocal conflicts
        for i in range(5):
            while True:
                version = (await event_store.load_async("counter", lambda n, e: n, 0)).version
                try:
                    await event_store.append_async(
                        "counter",
                        [{"type": "Incremented", "data": {"by": name, "i": i}}],
                        expected_version=version,
                    )
                    break
                except ConcurrencyConflict:
                    conflicts += 1

    async with EventStore(store, topic=topic) as one, EventStore(store, topic=topic) as two:
        await asyncio.gather(
            *(writer(s, f"{n}{k}") for n, s in (("a", one), ("b", two)) for k in range(3))
        )
        for reader in (one, two):
            stored = await reader.read_async("counter")

            assert [e.sequence for e in stored] == list(range(1, 31))
            written = sorted((e.data["by"], e.data["i"]) for e in stored)
            assert written == sorted(
                (f"{n}{k}", i) for n in "ab" for k in range(3) for i in range(5)
            ), "each success once, nothing else"


def _totals(state: dict[str, int], event: StoredEvent) -> dict[str, int]:
    key = event.data["sku"]
    return {**state, key: state.get(key, 0) + event.data["qty"]}


async def test_an_aggregate_from_a_snapshot_equals_the_full_fold(events):
    batch = [{"type": "Stocked", "data": {"sku": f"s{i % 7}", "qty": i}} for i in range(60)]
    await events.append_async("warehouse", batch[:30])
    await events.append_async("warehouse", batch[30:])
    first = await events.load_async("warehouse", _totals, {}, snapshot_every=25)
    assert first.version == 60 and first.replayed == 60 and first.snapshot_version is None
    for i in range(10):
        await events.publish_async("Stocked", {"sku": "s1", "qty": 100 + i}, stream="warehouse")
    again = await events.load_async("warehouse", _totals, {}, snapshot_every=25)
    assert again.snapshot_version == 60 and again.replayed == 10 and again.version == 70
    full: dict[str, Any] = {}
    for event in await events.read_async("warehouse"):
        full = _totals(full, event)
    assert again.state == full
    plain = await events.load_async("warehouse", _totals, {})  # no snapshots asked: full fold
    assert plain.state == full and plain.replayed == 70


async def test_a_projection_catches_up_with_history_and_then_follows(events):
    for i in range(5):
        await events.publish_async("OrderPlaced", {"amount": 10 * i}, stream=f"o{i}")
    await events.publish_async("Noise", {}, stream="o1")

    def revenue(total: int, event: StoredEvent) -> int:
        return total + event.data["amount"]

    async with events.projection("revenue", revenue, 0, types=["OrderPlaced"]) as projection:
        assert await projection.caught_up(timeout=30) == 100
        await events.publish_async("OrderPlaced", {"amount": 7}, stream="o9")
        assert await projection.caught_up(timeout=30) == 107
        assert projection.applied == 6


async def test_a_group_gets_unacknowledged_events_again_and_skips_other_types(events):
    for i in range(4):
        await events.publish_async("Invoice", {"n": i}, stream="billing")
        await events.publish_async("Ignored", {"n": i}, stream="billing")
    group = unique_name("billing")
    async with events.subscribe(types=["Invoice"], group=group) as subscription:
        got = [await subscription.get(timeout=30) for _ in range(3)]
        assert [e.data["n"] for e in got if e] == [0, 1, 2]
        await subscription.ack(got[0])
        await subscription.ack(got[1])  # the third is handled but never acknowledged
    async with events.subscribe(types=["Invoice"], group=group) as subscription:
        again = [await subscription.get(timeout=30) for _ in range(2)]
        assert [e.data["n"] for e in again if e] == [2, 3]
        assert all(e.type == "Invoice" for e in again if e)


async def test_replay_reads_everything_or_from_an_offset_a_time_or_of_some_types(events):
    early = datetime.now(UTC) - timedelta(hours=1)
    await events.publish_async({"type": "Old", "timestamp": early}, stream="a")
    marker = await events.publish_async("New", {"n": 1}, stream="a")
    await events.publish_async("New", {"n": 2}, stream="b")
    everything = await events.replay_async()
    assert sorted(e.type for e in everything) == ["New", "New", "Old"]
    assert [e.type for e in await events.replay_async(since=early + timedelta(minutes=30))] == [
        "New",
        "New",
    ]
    assert [e.type for e in await events.replay_async(types=["Old"])] == ["Old"]
    after = await events.replay_async(from_offset={marker.partition: marker.offset + 1})
    assert "Old" not in {e.type for e in after if e.stream == "a"}


def _event_sourced(event_store: EventStore, fail_first: bool) -> Workflow:
    wf = Workflow(name=unique_name("sourced"))

    @wf.task(id="create_order", retries=1, retry_delay=0.01)
    def create_order(context):
        order = {"id": uuid.uuid4(), "items": context.params["items"]}
        event_store.publish(
            {"type": "OrderCreated", "payload": order, "timestamp": datetime.utcnow()}
        )
        if fail_first and context.attempt == 1:
            raise ConnectionError("crashed after publishing")
        return {"items": context.params["items"]}

    return wf


async def test_events_from_a_task_belong_to_its_run_and_a_retry_publishes_nothing_twice(store):
    # As in the spec: a store of its own, first used from the task's thread (a private loop).
    url = f"memory://{uuid.uuid4().hex}" if store.startswith("memory") else store
    event_store = EventStore(url, topic=unique_name("workflow-events"))
    wf = _event_sourced(event_store, fail_first=True)
    try:
        async with Engine(store, [wf]) as engine:
            result = await (await engine.start(wf, params={"items": ["pen"]})).result(timeout=60)
        assert result.status == "completed" and result.tasks["create_order"].attempts == 2
        stored = await asyncio.to_thread(event_store.read, result.run_id)
        assert [e.type for e in stored] == ["OrderCreated"]
        assert stored[0].correlation_id == result.run_id
        assert stored[0].causation_id == f"{result.run_id}/create_order/1"
        assert stored[0].source is not None and stored[0].source.startswith(
            f"task:{wf.name}/create_order@"
        )
    finally:
        await asyncio.to_thread(event_store.close)


async def test_a_redelivered_attempt_publishes_its_events_once(events):
    wf = Workflow(name="redelivered")

    @wf.task(id="charge")
    def charge(context):
        events.publish("PaymentProcessed", {"run": context.run_id})
        events.publish("ReceiptSent", {"run": context.run_id})
        return "ok"

    dispatch = TaskDispatch(run_id=uuid.uuid4().hex, workflow=wf.name, task_id="charge", attempt=1)
    task: TaskDef = wf.get("charge")
    for _ in range(2):  # the same attempt delivered twice, as after a worker crash
        outcome = await run_attempt(task, charge, dispatch)
        assert outcome.type == "TaskCompleted"
    stored = await events.read_async(dispatch.run_id)
    assert [e.type for e in stored] == ["PaymentProcessed", "ReceiptSent"]
    tp = TopicPartition(events.topic, stored[0].partition)
    raw = await events._streams.log.read_partition(tp)
    assert len(raw) == 2, "the second delivery appended nothing"


@pytest.mark.kafka
def test_the_spec_event_sourcing_sample_runs_as_written(kafka_bootstrap, monkeypatch):
    monkeypatch.setenv("DEERFLOW_KAFKA_BOOTSTRAP", kafka_bootstrap)
    # builds EventStore(backend="kafka", ...) as it is imported: no connection yet
    example = load_example("event_sourcing.py", "event_sourcing_example")
    try:
        outcome = example.main(store=f"memory://{uuid.uuid4().hex}")
        stored = example.event_store.read(outcome["stream"])
    finally:
        example.event_store.close()
    assert outcome["run"] == "completed" and outcome["version"] == 3
    assert outcome["state"]["status"] == "shipped" and outcome["state"]["items"] == ["book", "lamp"]
    assert [e.type for e in stored] == ["OrderCreated", "PaymentProcessed", "OrderShipped"]
    assert stored[1].data["order_id"] == stored[0].data["id"]  # a UUID, stored as text
    assert example.event_store.topic == "workflow-events"


def test_log_options_with_a_log_that_is_given_are_a_type_error():
    log = open_log("memory://")
    with pytest.raises(TypeError, match="unexpected keyword arguments 'session_timeout_ms'"):
        EventStore(log, session_timeout_ms=100)
    with pytest.raises(TypeError, match="unexpected keyword argument 'bogus'"):
        EventStore("memory", bogus=1)
