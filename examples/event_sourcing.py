"""Event sourcing: the spec's "Event Sourcing Pattern" as written, then the order rebuilt from it.

The tasks publish ``OrderCreated`` and ``PaymentProcessed`` to the Kafka topic
``workflow-events`` (as in the spec); the workflow itself runs on the embedded store::

    export DEERFLOW_KAFKA_BOOTSTRAP=localhost:9092   # default; any Kafka-protocol broker
    python examples/event_sourcing.py

What deerflow adds under the spec's two calls: each event gets an id, a stream (here the run's
correlation id, so all events of one order are in one stream, in order), a sequence number
and the run's correlation and causation ids. The ids are derived from the task attempt, so if
a worker dies after publishing and the task runs again, the events are stored once. ``main``
then folds the stream back into the order (an aggregate), appends to it with optimistic
concurrency, and shows what a stale writer gets.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any
from uuid import uuid4

from deerflow import EventStore, Workflow
from deerflow.errors import ConcurrencyConflict
from deerflow.eventstore import StoredEvent


def charge_payment(order: dict[str, Any]) -> dict[str, Any]:
    """Stand-in for a payment provider: approve the order's charge."""
    return {
        "status": "approved",
        "charge_id": f"ch_{uuid.uuid4().hex[:12]}",
        "items": len(order["items"]),
    }


event_store = EventStore(backend="kafka", topic="workflow-events")

workflow = Workflow(name="event_sourced_order")


@workflow.task(id="create_order")
def create_order(context):
    order = {"id": uuid4(), "items": context.params["items"]}

    # Publish event
    event_store.publish({"type": "OrderCreated", "payload": order, "timestamp": datetime.utcnow()})

    return order


@workflow.task(id="process_payment", depends_on=["create_order"])
def process_payment(context):
    order = context.tasks["create_order"].output

    result = charge_payment(order)

    event_store.publish(
        {
            "type": "PaymentProcessed",
            "payload": {"order_id": order["id"], "status": result["status"]},
            "timestamp": datetime.utcnow(),
        }
    )

    return result


def order_state(state: dict[str, Any], event: StoredEvent) -> dict[str, Any]:
    """The order as its events tell it (the aggregate's reducer)."""
    if event.type == "OrderCreated":
        return {**state, "id": event.data["id"], "items": event.data["items"], "status": "new"}
    if event.type == "PaymentProcessed":
        return {**state, "status": f"paid ({event.data['status']})"}
    if event.type == "OrderShipped":
        return {**state, "status": "shipped", "carrier": event.data["carrier"]}
    return state


def main(store: str | None = None) -> dict[str, Any]:
    """Run the workflow, then rebuild the order from its events and ship it."""
    result = workflow.run(params={"items": ["book", "lamp"]}, store=store, timeout=60)
    stream = result.run_id  # events published by a run's tasks form the run's stream
    for event in event_store.read(stream):
        print(f"#{event.sequence} {event.type:<16} caused by {event.causation_id}")
    order = event_store.load(stream, order_state, {})
    print(f"order at version {order.version}: {order.state}")
    event_store.append(
        stream,
        [{"type": "OrderShipped", "data": {"carrier": "DHL"}}],
        expected_version=order.version,
    )
    try:  # a second writer that still believes the old version is refused
        event_store.append(stream, [{"type": "OrderCancelled"}], expected_version=order.version)
    except ConcurrencyConflict as conflict:
        print(f"stale write refused: {conflict}")
    final = event_store.load(stream, order_state, {})
    print(f"order at version {final.version}: {final.state}")
    return {"run": result.status, "stream": stream, "state": final.state, "version": final.version}


if __name__ == "__main__":
    try:
        main()
    finally:
        event_store.close()
