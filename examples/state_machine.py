"""State machine workflows: the spec's order state machine as a durable instance.

    python examples/state_machine.py

Starts an instance for one order on the embedded store, sends it transitions, shows that an
invalid one is refused without changing anything, and prints the transition history.
"""

from __future__ import annotations

import asyncio

from deerflow import Engine, State, StateMachine, Transition, TransitionNotAllowed, Workflow

OUTBOX: list[str] = []


def send_confirmation_email(order):
    OUTBOX.append(f"confirmation for {order['id']} to {order['email']}")


def notify_customer(order, status):
    OUTBOX.append(f"{order['id']} is {status}")


def refund_payment(order):
    OUTBOX.append(f"refunded {order['total']} for {order['id']}")


workflow = Workflow(name="order_state_machine")


@workflow.state_machine
class OrderStateMachine(StateMachine):
    # Define states
    pending = State(initial=True)
    confirmed = State()
    processing = State()
    shipped = State()
    delivered = State(final=True)
    cancelled = State(final=True)

    # Define transitions
    confirm = Transition(source=pending, target=confirmed)
    start_processing = Transition(source=confirmed, target=processing)
    ship = Transition(source=processing, target=shipped)
    deliver = Transition(source=shipped, target=delivered)
    cancel = Transition(source=[pending, confirmed], target=cancelled)

    # Transition handlers
    @on_transition(confirm)
    def on_confirm(self, context):
        send_confirmation_email(context.order)

    @on_transition(ship)
    def on_ship(self, context):
        notify_customer(context.order, "shipped")

    @on_transition(cancel)
    def on_cancel(self, context):
        refund_payment(context.order)


async def main(store: str = "sqlite:///deerflow.db") -> dict:
    async with Engine(store, [workflow]) as engine:
        order = {"id": "o-1001", "email": "ada@example.com", "total": 42.0}
        handle = await engine.start(workflow, input={"order": order})
        await engine.send(handle.run_id, "confirm")
        await engine.send(handle.run_id, "start_processing")
        try:
            await engine.send(handle.run_id, "cancel")  # not allowed once processing
        except TransitionNotAllowed as refused:
            print("refused:", refused)
        await engine.send(handle.run_id, "ship")
        await engine.send(handle.run_id, "deliver")
        result = await handle.result(timeout=30)
    print(result.status, result.state)
    for step in result.transitions:
        print(f"  {step['source']} --{step['transition'] or 'start'}--> {step['target']}")
    return {"status": result.status, "state": result.state, "outbox": OUTBOX}


if __name__ == "__main__":
    asyncio.run(main())
