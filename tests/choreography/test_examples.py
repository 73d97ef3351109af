"""The choreography and Faust examples run (the Faust one is exercised end to end in
test_faust.py with an app of the same shape)."""

from __future__ import annotations

import uuid

from tests.example_runs import load_example


async def test_the_choreography_example_runs_both_forms():
    example = load_example("choreography.py")
    chain = await example.main(f"memory://{uuid.uuid4().hex}")
    assert chain == [
        "OrderStarted",
        "InventoryReserved",
        "PaymentRequested",
        "PaymentCompleted",
        "ShipmentRequested",
    ]
    assert len(example.RESERVED) == 1


def test_the_faust_example_defines_the_agent_and_both_deerflow_workflows():
    example = load_example("faust_agent.py")
    assert [agent.name for agent in example.app.agents.values()] == [f"{example.__name__}.screen"]
    assert {h.event_type for h in example.checkout.event_handlers} == {"FraudCleared"}
    assert example.review.triggers[0].filter({"type": "FraudSuspected"})
    assert example.fraud_score({"amount": 5000}) == 1.0
