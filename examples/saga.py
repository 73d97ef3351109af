"""Saga pattern: the spec's order saga, with in-process stand-ins for the three services.

    deerflow run examples/saga.py --param fail_at=shipping

Run it without ``fail_at`` to see it complete; with ``fail_at=shipping`` the shipment fails and
deerflow refunds the payment, then releases the inventory (reverse order, completed steps only).
The run then ends ``compensated`` (exit code 1: the order did not go through).
"""

from __future__ import annotations

import itertools

from deerflow import CompensatingAction, Saga, Workflow  # noqa: F401 - the spec's import line

_ids = itertools.count(1)
LEDGER: list[str] = []


class _Service:
    """Records what happened; refuses when the run's ``fail_at`` names it."""

    def __init__(self, name: str) -> None:
        self.name = name

    def act(self, what: str, fail_at: str | None, **data) -> dict:
        if fail_at == self.name:
            raise RuntimeError(f"{self.name} service refused {what}")
        LEDGER.append(f"{self.name}.{what}")
        return {"id": f"{self.name[:3]}-{next(_ids)}", **data}


class InventoryService(_Service):
    def reserve(self, items, fail_at=None):
        return self.act("reserve", fail_at, items=items)

    def release(self, reservation_id):
        LEDGER.append(f"inventory.release:{reservation_id}")


class PaymentService(_Service):
    def charge(self, customer_id, amount, fail_at=None):
        return self.act("charge", fail_at, customer=customer_id, amount=amount)

    def refund(self, payment_id):
        LEDGER.append(f"payment.refund:{payment_id}")


class ShippingService(_Service):
    def create_shipment(self, address, items, fail_at=None):
        return self.act("create_shipment", fail_at, address=address, items=items)

    def cancel(self, shipment_id):
        LEDGER.append(f"shipping.cancel:{shipment_id}")


inventory_service = InventoryService("inventory")
payment_service = PaymentService("payment")
shipping_service = ShippingService("shipping")

workflow = Workflow(name="order_saga")


@workflow.saga
class OrderSaga(Saga):
    @step(order=1)
    def reserve_inventory(self, context):
        return inventory_service.reserve(context.params["items"], context.params.get("fail_at"))

    @step(order=1, compensate="release_inventory")
    def release_inventory(self, context, reservation):
        inventory_service.release(reservation["id"])

    @step(order=2)
    def charge_payment(self, context):
        return payment_service.charge(
            context.params["customer_id"],
            context.params["amount"],
            context.params.get("fail_at"),
        )

    @step(order=2, compensate="refund_payment")
    def refund_payment(self, context, payment):
        payment_service.refund(payment["id"])

    @step(order=3)
    def create_shipment(self, context):
        return shipping_service.create_shipment(
            context.params["address"],
            context.tasks["reserve_inventory"].output["items"],
            context.params.get("fail_at"),
        )

    @step(order=3, compensate="cancel_shipment")
    def cancel_shipment(self, context, shipment):
        shipping_service.cancel(shipment["id"])


DEFAULTS = {
    "items": ["book", "lamp"],
    "customer_id": "c-42",
    "amount": 99.5,
    "address": "1 Main St",
}

if __name__ == "__main__":
    import sys

    fail_at = sys.argv[1] if len(sys.argv) > 1 else None
    result = workflow.run(params={**DEFAULTS, "fail_at": fail_at}, store="memory://saga")
    print(result.status, LEDGER)
