"""The spec's order saga against stub services that record calls."""

from __future__ import annotations

import pytest

from deerflow import CompensatingAction, DefinitionError, Engine, Saga, Workflow, step
from deerflow.core import WorkflowDef
from tests.sagas.services import InventoryService, PaymentService, Recorder, ShippingService

PARAMS = {"items": ["book"], "customer_id": "c1", "amount": 42, "address": "1 Main St"}


def order_saga(rec: Recorder) -> Workflow:
    """The spec's sample, verbatim but for the services it talks to."""
    inventory_service = InventoryService(rec)
    payment_service = PaymentService(rec)
    shipping_service = ShippingService(rec)

    workflow = Workflow(name="order_saga")

    @workflow.saga
    class OrderSaga(Saga):
        @step(order=1)
        def reserve_inventory(self, context):
            return inventory_service.reserve(context.params["items"])

        @step(order=1, compensate="release_inventory")
        def release_inventory(self, context, reservation):
            inventory_service.release(reservation["id"])

        @step(order=2)
        def charge_payment(self, context):
            return payment_service.charge(context.params["customer_id"], context.params["amount"])

        @step(order=2, compensate="refund_payment")
        def refund_payment(self, context, payment):
            payment_service.refund(payment["id"])

        @step(order=3)
        def create_shipment(self, context):
            return shipping_service.create_shipment(
                context.params["address"], context.tasks["reserve_inventory"].output["items"]
            )

        @step(order=3, compensate="cancel_shipment")
        def cancel_shipment(self, context, shipment):
            shipping_service.cancel(shipment["id"])

    return workflow


async def run(store: str, wf: Workflow):
    async with Engine(store, [wf]) as engine:
        return await (await engine.start(wf, params=PARAMS)).result(timeout=60)


async def test_the_saga_runs_its_steps_in_order_and_completes(store):
    rec = Recorder()
    result = await run(store, order_saga(rec))
    assert result.status == "completed"
    assert rec.calls == ["inventory.reserve", "payment.charge", "shipping.create"]
    assert result.output == {"id": "ship-1", "to": "1 Main St", "items": ["book"]}


async def test_a_failure_at_step_3_compensates_step_2_then_step_1(store):
    rec = Recorder(fail={"shipping.create"})
    result = await run(store, order_saga(rec))
    assert result.status == "compensated"
    assert rec.calls == [
        "inventory.reserve",
        "payment.charge",
        "shipping.create",
        "payment.refund:pay-1",
        "inventory.release:res-1",
    ]
    assert result.failed_task == "create_shipment"
    assert result.tasks["refund_payment"].status == "completed"
    assert "cancel_shipment" not in result.tasks  # step 3 never completed: nothing to undo


async def test_a_failure_at_step_1_compensates_nothing(store):
    rec = Recorder(fail={"inventory.reserve"})
    result = await run(store, order_saga(rec))
    assert result.status == "compensated"
    assert rec.calls == ["inventory.reserve"]


async def test_a_transient_compensation_failure_is_retried(store):
    rec = Recorder(fail={"shipping.create"}, fail_times={"payment.refund:pay-1": 1})
    wf = order_saga(rec)
    # Shorten the compensation's own retry delay for the test.
    comp = wf.get("refund_payment")
    object.__setattr__(comp, "retry", comp.retry.__class__(3, 0.01, 1.0, 1.0))
    result = await run(store, wf)
    assert result.status == "compensated"
    assert rec.calls.count("payment.refund:pay-1") == 2
    assert rec.calls[-1] == "inventory.release:res-1"


async def test_a_compensation_that_keeps_failing_leaves_the_run_compensation_failed(store):
    rec = Recorder(fail={"shipping.create", "payment.refund:pay-1"})
    wf = order_saga(rec)
    comp = wf.get("refund_payment")
    object.__setattr__(comp, "retry", comp.retry.__class__(1, 0.01, 1.0, 1.0))
    result = await run(store, wf)
    assert result.status == "compensation_failed"
    assert "compensation 'refund_payment' failed" in (result.error or "")
    assert rec.calls.count("payment.refund:pay-1") == 2
    # Step 1's compensation waits for step 2's, which never succeeded: an operator decides.
    assert "inventory.release:res-1" not in rec.calls


async def test_the_explicit_form_and_a_plain_workflow_compensate_too(store):
    undone: list[str] = []
    wf = Workflow(name="explicit_saga")

    @wf.saga
    class Booking(Saga):
        @step(order=1)
        def book_flight(self, context):
            return {"flight": "LH1"}

        @book_flight.compensation(retries=1, retry_delay=0.01)
        def cancel_flight(self, context, booking):
            undone.append(booking["flight"])

        @step(order=2)
        def book_hotel(self, context):
            raise RuntimeError("no rooms")

    plain = Workflow(name="plain_compensation")

    @plain.task(
        id="debit",
        compensate=CompensatingAction(lambda ctx, out: undone.append(out), id="credit", retries=0),
    )
    def debit(context):
        return "debit-7"

    @plain.task(id="fail", depends_on=["debit"])
    def fail(context):
        raise ValueError("later step failed")

    assert (await run(store, wf)).status == "compensated"
    assert (await run(store, plain)).status == "compensated"
    assert undone == ["LH1", "debit-7"]


def test_an_ambiguous_compensation_fails_at_definition_time():
    wf = Workflow(name="ambiguous")
    with pytest.raises(DefinitionError, match="ambiguous"):

        @wf.saga
        class Twin(Saga):
            @step(order=1)
            def a(self, context): ...

            @step(order=1)
            def b(self, context): ...

            @step(order=1, compensate="undo")
            def undo(self, context, out): ...


def test_compensations_are_a_kind_of_node_the_sagas_feature_brings():
    wf = Workflow(name="kinds")

    @wf.task(id="debit", compensate=CompensatingAction(lambda ctx, out: None, id="credit"))
    def debit(context): ...

    credit = wf.get("credit")
    assert (credit.kind.name, credit.options["compensates"]) == ("compensation", "debit")
    bare = WorkflowDef(name="bare")  # the core alone knows no compensation
    with pytest.raises(DefinitionError, match="task 'debit': compensate= needs the sagas"):
        bare.task(id="debit", compensate=lambda ctx, out: None)(debit)
