"""Runs that wait: an invoice approval that cools down, then waits for a person's signal.

Run it with::

    deerflow run examples/sleep_and_signals.py:invoice_approval --param invoice=INV-7

``cool_down`` sleeps two seconds (a durable timer: no worker is held). ``approval`` then waits
for the signal ``approve``, at most five seconds:
send it from another shell with
``deerflow runs signal RUN_ID approve --data '{"by": "ann"}'``. Without a signal the wait
times out, its output is ``None`` and ``book`` escalates instead of booking.
"""

from __future__ import annotations

from typing import Any

from deerflow import Workflow

invoice_approval = Workflow(name="invoice_approval")


@invoice_approval.task(id="request")
def request(context: Any) -> dict[str, Any]:
    return {"invoice": context.params.get("invoice", "INV-1")}


invoice_approval.sleep(id="cool_down", duration="2s", depends_on=["request"])
invoice_approval.wait_for_signal(
    id="approval", name="approve", timeout="5s", depends_on=["cool_down"]
)


@invoice_approval.task(id="book", depends_on=["approval"])
def book(context: Any) -> dict[str, Any]:
    invoice = context.tasks["request"].output["invoice"]
    approval = context.tasks["approval"].output
    if approval is None:  # nobody answered in time
        return {"invoice": invoice, "booked": False, "escalated_to": "finance"}
    return {"invoice": invoice, "booked": True, "approved_by": approval.get("by")}
