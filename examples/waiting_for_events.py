"""Runs that wait for events: an invoice waits for its approval, an onboarding cancels itself.

``invoice_approval`` asks for an approval, then waits up to seven days for the
``InvoiceApproved`` event of *its* invoice (``data.invoice_id`` equal to the run's
``params.invoice_id``); the booking sees who approved, or ``None`` after the timeout.
``onboarding`` is cancelled by a ``UserDeleted`` event of its user, wherever it is.

Run it on the embedded store::

    python examples/waiting_for_events.py

On Kafka, every worker runs the matching index; any process (a task, a handler, another
service) publishes the events::

    export DEERFLOW_STORE=kafka://localhost:9092
    deerflow worker examples/waiting_for_events.py
    deerflow run examples/waiting_for_events.py:invoice_approval -p invoice_id=inv-7
"""

from __future__ import annotations

import asyncio

from deerflow import CancelOn, Engine, RunHandle, Workflow, publish_event_async

invoice_approval = Workflow(name="invoice_approval")


@invoice_approval.task(id="request")
def request(context):
    """Ask someone to approve the invoice (stand-in: a message to a queue)."""
    return {"asked": context.params["invoice_id"]}


invoice_approval.wait_for_event(
    id="approval",
    event="InvoiceApproved",
    depends_on=["request"],
    match={"data.invoice_id": "params.invoice_id"},
    timeout="7d",
)


@invoice_approval.task(id="book", depends_on=["approval"])
def book(context):
    """Book the invoice if it was approved."""
    approval = context.tasks["approval"].output  # the event, or None after the timeout
    if approval is None:
        return {"booked": False}
    return {"booked": True, "by": approval["data"]["by"]}


onboarding = Workflow(
    name="onboarding",
    cancel_on=[CancelOn(event="UserDeleted", match={"data.user_id": "params.user_id"})],
)

onboarding.wait_for_event(
    id="first_login",
    event="UserLoggedIn",
    match={"data.user_id": "params.user_id"},
    timeout="30d",
)


@onboarding.task(id="welcome", depends_on=["first_login"])
def welcome(context):
    """Send the welcome mail once the user has logged in."""
    return {"welcomed": context.params["user_id"]}


async def waiting(run: RunHandle, node: str) -> None:
    """Return once ``node`` of ``run`` waits (events before that would not match it)."""
    for _ in range(600):
        if (await run.status()).tasks.get(node, None) is not None:
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{node} of {run.run_id} never waited")


async def main(store: str = "memory://waiting-for-events") -> dict[str, str]:
    """Start an invoice and an onboarding, publish their events, report how each ended."""
    async with Engine(store, [invoice_approval, onboarding]) as engine:
        invoice = await engine.start(invoice_approval, params={"invoice_id": "inv-7"})
        user = await engine.start(onboarding, params={"user_id": "u-42"})
        await waiting(invoice, "approval")
        await waiting(user, "first_login")
        await publish_event_async(
            "InvoiceApproved", {"invoice_id": "inv-7", "by": "ann"}, store=engine
        )
        await publish_event_async("UserDeleted", {"user_id": "u-42"}, store=engine)
        booked, deleted = await invoice.result(timeout=30), await user.result(timeout=30)
    return {
        "invoice_approval": f"{booked.status}: {booked.output}",
        "onboarding": f"{deleted.status}: {deleted.error}",
    }


if __name__ == "__main__":
    for name, outcome in asyncio.run(main()).items():
        print(f"{name}: {outcome}")
