"""Stub services for the spec's order saga: they record every call, and can be told to fail."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Recorder:
    calls: list[str] = field(default_factory=list)
    fail: set[str] = field(default_factory=set)
    fail_times: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def call(self, name: str, result: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.calls.append(name)
            if name in self.fail:
                raise RuntimeError(f"{name} refused")
            if self.fail_times.get(name, 0) > 0:
                self.fail_times[name] -= 1
                raise ConnectionError(f"{name} briefly unavailable")
        return result


class InventoryService:
    def __init__(self, rec: Recorder) -> None:
        self.rec = rec

    def reserve(self, items):
        return self.rec.call("inventory.reserve", {"id": "res-1", "items": items})

    def release(self, reservation_id):
        self.rec.call(f"inventory.release:{reservation_id}", {})


class PaymentService:
    def __init__(self, rec: Recorder) -> None:
        self.rec = rec

    def charge(self, customer_id, amount):
        return self.rec.call(
            "payment.charge", {"id": "pay-1", "customer": customer_id, "amount": amount}
        )

    def refund(self, payment_id):
        self.rec.call(f"payment.refund:{payment_id}", {})


class ShippingService:
    def __init__(self, rec: Recorder) -> None:
        self.rec = rec

    def create_shipment(self, address, items):
        return self.rec.call("shipping.create", {"id": "ship-1", "to": address, "items": items})

    def cancel(self, shipment_id):
        self.rec.call(f"shipping.cancel:{shipment_id}", {})
