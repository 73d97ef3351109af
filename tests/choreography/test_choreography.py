"""Choreography on every store: event handlers, publish_event, retries, dead letters, idempotency.

The spec's chain (OrderStarted -> InventoryReserved -> PaymentRequested -> PaymentCompleted ->
ShipmentRequested) runs with the spec's own workflow and two service handlers.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from deerflow import Engine, EventStore, NonRetryableError, Workflow, publish_event
from deerflow.cli._loader import load_module_workflows
from deerflow.errors import EventStoreError
from deerflow.eventstore import Message, StoredEvent, TopicPartition

APPS = Path(__file__).parent / "apps"
CHAIN = [
    "OrderStarted",
    "InventoryReserved",
    "PaymentRequested",
    "PaymentCompleted",
    "ShipmentRequested",
]


async def eventually(check: Callable[[], Any], *, within: float = 60.0) -> Any:
    """Call ``check`` (sync or async) until it returns something truthy."""
    deadline = time.monotonic() + within
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        assert time.monotonic() < deadline, f"not true within {within}s"
        await asyncio.sleep(0.05)


async def chain_of(store: EventStore, stream: str, last: str = CHAIN[-1]) -> list[StoredEvent]:
    """The stream's events once ``last`` is among them."""

    async def done() -> list[StoredEvent] | None:
        events = await store.read_async(stream)
        return events if any(e.type == last for e in events) else None

    result: list[StoredEvent] = await eventually(done)
    return result


async def dead_letters(engine: Engine) -> list[dict[str, Any]]:
    """Every letter of the engine's dead-letter topic."""
    from deerflow import _codec

    count = await engine.log.partition_count(engine.topics.dlq)
    records = await engine.log.read_partitions(
        {TopicPartition(engine.topics.dlq, p): 0 for p in range(count)}
    )
    return [_codec.loads(r.value) for batch in records.values() for r in batch]


async def test_the_spec_chain_completes_with_one_correlation_id_and_a_causation_chain(store):
    workflows = [
        *load_module_workflows(str(APPS / "spec_app.py"))[0],
        *load_module_workflows(str(APPS / "services_app.py"))[0],
    ]
    spec = next(wf for wf in workflows if wf.name == "choreographed_order")
    async with Engine(store, workflows) as engine:
        run = await (await engine.start(spec, params={"order_id": "o-1"})).result(timeout=60)
        assert run.status == "completed"
        async with EventStore(engine) as store:  # the engine's events topic
            events = await chain_of(store, run.run_id)
    assert [e.type for e in events] == CHAIN
    assert {e.correlation_id for e in events} == {run.run_id}
    assert events[0].causation_id == f"{run.run_id}/start_order/1"
    assert [e.causation_id for e in events[1:]] == [e.id for e in events[:-1]]
    assert events[-1].data["order_id"] == "o-1" and "inventory_pid" in events[-1].data
    assert [e.sequence for e in events] == [1, 2, 3, 4, 5]


async def test_the_orchestrated_form_is_an_async_task_awaiting_services(store):
    async def call_service(name: str, params: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0.01)
        return {"service": name, "order": params["order_id"]}

    async def call_inventory_service(params):
        return await call_service("inventory", params)

    async def call_payment_service(params):
        return await call_service("payment", params)

    async def call_shipping_service(params):
        return await call_service("shipping", params)

    # Orchestration (centralized control)
    orchestrated_workflow = Workflow(name="orchestrated_order")

    @orchestrated_workflow.task(id="coordinator")
    async def coordinate_order(context):
        # Central coordinator manages all steps
        inventory = await call_inventory_service(context.params)
        payment = await call_payment_service(context.params)
        shipping = await call_shipping_service(context.params)
        return {"inventory": inventory, "payment": payment, "shipping": shipping}

    async with Engine(store, [orchestrated_workflow]) as engine:
        handle = await engine.start(orchestrated_workflow, params={"order_id": "o-2"})
        result = await handle.result(timeout=60)
    assert result.status == "completed"
    assert result.output["shipping"] == {"service": "shipping", "order": "o-2"}


async def test_a_handler_that_keeps_failing_dead_letters_the_event_and_moves_on(store):
    wf = Workflow(name="payments")
    attempts: list[tuple[str, int]] = []
    charged: list[str] = []

    @wf.event_handler("ChargeRequested", retries=2, retry_delay=0.01)
    def charge(event):
        attempts.append((event.data["card"], event.attempt))
        if event.data["card"] == "broken":
            raise ConnectionError("bank unreachable")
        charged.append(event.data["card"])

    @wf.event_handler("RefundRequested", retries=5)
    def refund(event):
        raise NonRetryableError("refunds are closed")

    async with Engine(store, [wf]) as engine:
        broken = await publish_event_via(engine, "ChargeRequested", {"card": "broken"})
        await publish_event_via(engine, "ChargeRequested", {"card": "good"}, stream=broken.stream)
        refused = await publish_event_via(engine, "RefundRequested", {"card": "x"})
        await eventually(lambda: charged == ["good"])
        letters = await eventually(lambda: _two(dead_letters(engine)))
    assert attempts[:3] == [("broken", 1), ("broken", 2), ("broken", 3)]
    by_handler = {letter["handler"]: letter for letter in letters}
    charge_letter = by_handler["payments.charge"]
    assert charge_letter["attempts"] == 3 and charge_letter["event"]["id"] == broken.id
    assert "ConnectionError: bank unreachable" in charge_letter["reason"]
    refund_letter = by_handler["payments.refund"]
    assert refund_letter["attempts"] == 1 and refund_letter["event"]["id"] == refused.id
    assert "refunds are closed" in refund_letter["reason"]


async def test_replaying_a_handlers_dead_letter_hands_the_event_to_that_handler_only(store):
    from deerflow.errors import DeerflowError
    from deerflow.web import _dlq

    wf = Workflow(name="billing")
    bank_up = False
    charged: list[tuple[str, str]] = []
    audited: list[str] = []

    @wf.event_handler("ChargeRequested", retries=1, retry_delay=0.01)
    def charge(event):
        if not bank_up:
            raise ConnectionError("bank unreachable")
        charged.append((event.data["card"], event.idempotency_key))

    @wf.event_handler("ChargeRequested")
    def audit(event):
        audited.append(event.id)

    async with Engine(store, [wf]) as engine:
        event = await publish_event_via(engine, "ChargeRequested", {"card": "c-1"})
        await eventually(lambda: audited == [event.id])
        (letter,) = await eventually(lambda: _dlq.dead_letters(engine))
        bank_up = True  # the cause is fixed
        done = await _dlq.replay(engine, letter.ref)
        (replayed,) = await _dlq.dead_letters(engine)
        async with Engine(store, [], orchestrate=False, work=False) as without_the_app:
            with pytest.raises(DeerflowError, match="not loaded here"):
                await _dlq.replay(without_the_app, letter.ref)
    assert done == f"event {event.id} handled again by billing.charge"
    assert charged == [("c-1", f"billing.charge/{event.id}")]  # the first delivery's key
    assert audited == [event.id]  # the handler that had succeeded did not see it again
    assert replayed.ref == letter.ref and replayed.replayed_at is not None


async def _two(letters: Any) -> list[dict[str, Any]] | None:
    found = await letters
    return found if len(found) >= 2 else None


async def publish_event_via(
    engine: Engine, event_type: str, data: Any, stream: str | None = None
) -> StoredEvent:
    from deerflow import publish_event_async

    return await publish_event_async(event_type, data, store=engine, stream=stream)


async def test_redelivery_repeats_no_effect_keyed_on_the_idempotency_key(store):
    wf = Workflow(name="shipping")
    effects: dict[str, Any] = {}  # an idempotent sink: one entry per key
    calls: list[str] = []
    crash_now = threading.Event()
    crash_now.set()
    release = threading.Event()

    @wf.event_handler("ShipmentRequested")
    def ship(event):
        effects.setdefault(event.idempotency_key, event.data)
        calls.append(event.idempotency_key)
        if crash_now.is_set():  # the process "dies" after the effect, before acknowledging
            crash_now.clear()
            release.wait(30)

    async with Engine(store, [wf]) as engine:
        event = await publish_event_via(engine, "ShipmentRequested", {"parcel": 1})
        await eventually(lambda: len(calls) == 1)
    # A new engine (another process, in effect) gets the unacknowledged event again.
    async with Engine(store, [wf]) as engine:
        await eventually(lambda: len(calls) == 2)
        # The very same record appended twice (a producer retry) is handled once.
        raw = Message(engine.topics.events, event.model_dump_json().encode(), key=event.stream)
        await engine.log.append([raw])
        await publish_event_via(engine, "ShipmentRequested", {"parcel": 2}, stream=event.stream)
        await eventually(lambda: len(calls) == 3)
        await asyncio.sleep(0.5)  # time for a wrong extra call to show up
    release.set()
    assert calls[0] == calls[1] == f"shipping.ship/{event.id}"
    assert len(calls) == 3 and len(effects) == 2
    assert effects[calls[0]] == {"parcel": 1}


async def test_publish_event_outside_tasks_and_handlers_needs_a_store(store):
    wf = Workflow(name="listener")
    seen: list[str] = []

    @wf.event_handler("Hello")
    async def hello(event):
        seen.append(event.data["who"])

    with pytest.raises(EventStoreError, match="store="):
        publish_event("Hello", {"who": "nobody"})
    async with Engine(store, [wf]) as engine:
        await publish_event_via(engine, "Hello", {"who": "engine"})
        async with EventStore(engine) as own:  # a store of one's own on the events topic
            await own.publish_async("Hello", {"who": "store"})
        await eventually(lambda: sorted(seen) == ["engine", "store"])
        # From synchronous code in another thread, through a running engine:
        await asyncio.to_thread(publish_event, "Hello", {"who": "thread"}, store=engine)
        await eventually(lambda: "thread" in seen)


def test_event_handlers_are_checked_when_defined():
    from deerflow import DefinitionError

    wf = Workflow(name="checked")
    with pytest.raises(DefinitionError, match="event type"):
        wf.event_handler("")
    with pytest.raises(DefinitionError, match="retries"):
        wf.event_handler("X", retries=-1)

    @wf.event_handler("X")
    def twice(event):
        pass

    with pytest.raises(DefinitionError, match="two event handlers"):
        wf.event_handler("Y")(twice)
    wf.validate()  # handlers alone make a valid workflow (a service)


async def test_an_async_handler_is_told_to_use_the_async_form(store):
    wf = Workflow(name="impatient")
    errors: list[str] = []

    @wf.event_handler("Tick", retries=0)
    async def tick(event):
        try:
            publish_event("Tock", event.data)
        except RuntimeError as exc:
            errors.append(str(exc))

    async with Engine(store, [wf]) as engine:
        await publish_event_via(engine, "Tick", {})
        await eventually(lambda: errors)
    assert "await publish_event_async(...)" in errors[0]


async def test_a_task_waiting_when_the_engine_starts_publishes_once_its_services_are_up(
    tmp_path, monkeypatch
):
    """The worker runs nothing until the services a body publishes through have started."""
    from deerflow.choreography import _service as _choreography_service

    url = f"sqlite:///{tmp_path / 'waiting.db'}"
    wf = Workflow(name="publishes_at_start")

    @wf.task(id="announce")
    def announce(context):
        publish_event("Announced", {"n": 1})
        return "sent"

    @wf.event_handler("Announced")
    def heard(event):
        pass

    async with Engine(url, [wf], orchestrate=False, work=False) as client:
        handle = await client.start(wf)  # waits in the log for an engine to run it

    started = _choreography_service.ChoreographyService.start

    async def slow_start(self):
        await asyncio.sleep(0.5)  # the orchestrator has dispatched the task by now
        await started(self)

    monkeypatch.setattr(_choreography_service.ChoreographyService, "start", slow_start)
    async with Engine(url, [wf]) as engine:
        result = await engine.wait(handle.run_id, timeout=30)
    assert result.status == "completed", result.error
    assert result.output == "sent"
