"""Choreography vs orchestration: the spec's sample as written, with the services it implies.

Orchestration is one async task awaiting each service in turn. Choreography has no
coordinator: ``start_order`` publishes ``OrderStarted`` and each service reacts to the event it
cares about by publishing the next one::

    OrderStarted -> InventoryReserved -> PaymentRequested -> PaymentCompleted -> ShipmentRequested
      (task)         (inventory)         (spec handler)      (payments)         (spec handler)

Run both on the embedded store::

    python examples/choreography.py

Or spread the choreography over processes on Kafka, one service per process (every process
loads this file, so any of them can run the workflows' tasks)::

    export DEERFLOW_PREFIX=shop DEERFLOW_STORE=kafka://localhost:9092
    DEERFLOW_HANDLERS='choreographed_order.*' deerflow worker examples/choreography.py
    DEERFLOW_HANDLERS='order_services.reserve*' deerflow worker examples/choreography.py
    DEERFLOW_HANDLERS='order_services.take*' deerflow worker examples/choreography.py
    deerflow run examples/choreography.py:choreographed_order -p order_id=42

Every event of the chain carries the run's id as correlation id and the previous event's id as
causation id; ``deerflow events tail --topic events --run RUN_ID`` (the run id is the chain's
stream key) or ``EventStore(...).read(run_id)`` shows the chain, and ``deerflow dlq list``
the events a handler gave up on.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from deerflow import Engine, EventStore, Workflow, publish_event


async def _service(name: str, params: dict[str, Any]) -> dict[str, Any]:
    await asyncio.sleep(0.05)  # stand-in for a network call
    return {"service": name, "order_id": params.get("order_id"), "ok": True}


async def call_inventory_service(params: dict[str, Any]) -> dict[str, Any]:
    """Reserve the order's items."""
    return await _service("inventory", params)


async def call_payment_service(params: dict[str, Any]) -> dict[str, Any]:
    """Charge the customer."""
    return await _service("payment", params)


async def call_shipping_service(params: dict[str, Any]) -> dict[str, Any]:
    """Book the parcel."""
    return await _service("shipping", params)


# Orchestration (centralized control)
orchestrated_workflow = Workflow(name="orchestrated_order")


@orchestrated_workflow.task(id="coordinator")
async def coordinate_order(context):
    # Central coordinator manages all steps
    inventory = await call_inventory_service(context.params)
    payment = await call_payment_service(context.params)
    shipping = await call_shipping_service(context.params)
    return {"inventory": inventory, "payment": payment, "shipping": shipping}


# Choreography (event-driven, decentralized)
choreographed_workflow = Workflow(name="choreographed_order")


@choreographed_workflow.task(id="start_order")
def start_order(context):
    publish_event("OrderStarted", context.params)


@choreographed_workflow.event_handler("InventoryReserved")
def on_inventory_reserved(event):
    publish_event("PaymentRequested", event.data)


@choreographed_workflow.event_handler("PaymentCompleted")
def on_payment_completed(event):
    publish_event("ShipmentRequested", event.data)


# The two services the chain needs besides the spec's handlers. A handler only reacts: it has
# no run of its own, so a workflow of handlers alone is a valid "service".
services = Workflow(name="order_services")

RESERVED: dict[str, Any] = {}  # an idempotent side effect: one reservation per key


@services.event_handler("OrderStarted")
def reserve_inventory(event):
    # Delivery is at least once; keyed on event.idempotency_key the effect happens once.
    RESERVED.setdefault(event.idempotency_key, event.data)
    publish_event("InventoryReserved", {**event.data, "reserved": True})


@services.event_handler("PaymentRequested", retries=5, retry_delay=0.2)
def take_payment(event):
    publish_event("PaymentCompleted", {**event.data, "paid": True})


async def main(store: str = "memory://choreography") -> list[str]:
    """Run the orchestrated order, then the choreographed one; return the chain's types."""
    workflows = [orchestrated_workflow, choreographed_workflow, services]
    async with Engine(store, workflows) as engine:
        orchestrated = await engine.start(orchestrated_workflow, params={"order_id": 41})
        print("orchestrated:", (await orchestrated.result(timeout=60)).output)
        run = await engine.start(choreographed_workflow, params={"order_id": 42})
        await run.result(timeout=60)  # the run ends when start_order has published
        async with EventStore(engine) as events:
            chain = await _follow(events, run.run_id, until="ShipmentRequested")
    for event in chain:
        print(f"{event.type:<18} correlation={event.correlation_id} by {event.source}")
    return [event.type for event in chain]


async def _follow(events: EventStore, stream: str, until: str) -> list[Any]:
    for _ in range(600):
        chain = await events.read_async(stream)
        if any(event.type == until for event in chain):
            return chain
        await asyncio.sleep(0.05)
    raise TimeoutError(f"no {until} in stream {stream}")


if __name__ == "__main__":
    asyncio.run(main(os.environ.get("DEERFLOW_STORE", "memory://choreography")))
