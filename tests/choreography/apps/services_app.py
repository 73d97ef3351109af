"""The services the spec's chain implies: inventory and payments, reacting to their events.

The file also loads the spec's workflow (every worker process loads every workflow that has
runs), so a process running it with ``DEERFLOW_HANDLERS=order_services.*`` runs only these two
handlers. Each stamps its process id into the data, so a test can tell who handled what.
"""

import os

from spec_app import choreographed_workflow  # type: ignore[import-not-found]  # noqa: F401 - runs of it may land here

from deerflow import Workflow, publish_event

services = Workflow(name="order_services")


@services.event_handler("OrderStarted")
def reserve_inventory(event):
    publish_event("InventoryReserved", {**event.data, "inventory_pid": os.getpid()})


@services.event_handler("PaymentRequested")
def take_payment(event):
    publish_event("PaymentCompleted", {**event.data, "payment_pid": os.getpid()})
