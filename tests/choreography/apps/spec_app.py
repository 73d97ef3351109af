"""The spec's "Choreography vs Orchestration" sample as written (choreography half)."""

from deerflow import Workflow, publish_event

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
