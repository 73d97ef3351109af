"""An order saga whose effects land in the sink named by ``$SINK_DB``; faults come from params.

``params["fail_at"]`` (1-3) makes that step fail for good; ``params["refund"]`` /
``params["release"]`` set to ``"flaky"`` make that compensation fail on its first attempt, to
``"broken"`` on every attempt. Compensations sleep ``$COMP_SLEEP`` seconds (default 0) first,
so a test can kill a worker during the rollback.
"""

from __future__ import annotations

import os
import time

from deerflow import NonRetryableError, Saga, Workflow, step
from tests.engine.apps.sink import Sink

SINK = Sink(os.environ["SINK_DB"])
PAUSE = float(os.environ.get("COMP_SLEEP", "0"))
workflow = Workflow(name="order_saga_faults")


def _forward(context, number: int, name: str) -> dict[str, str]:
    if context.params.get("fail_at") == number:
        raise NonRetryableError(f"{name} refused")
    SINK.record(context.idempotency_key, context.attempt, name)
    return {"id": f"{name}-{context.run_id}"}


def _undo(context, fault_name: str, undone: dict[str, str]) -> None:
    time.sleep(PAUSE)
    fault = context.params.get(fault_name)
    if fault == "broken" or (fault == "flaky" and context.attempt == 1):
        raise ConnectionError(f"{fault_name} service unavailable ({fault})")
    SINK.record(context.idempotency_key, context.attempt, f"undo:{undone['id']}")


@workflow.saga
class OrderSaga(Saga):
    @step(order=1)
    def reserve_inventory(self, context):
        return _forward(context, 1, "reserve")

    @reserve_inventory.compensation(retries=2, retry_delay=0.01)
    def release_inventory(self, context, reservation):
        _undo(context, "release", reservation)

    @step(order=2)
    def charge_payment(self, context):
        return _forward(context, 2, "charge")

    @charge_payment.compensation(retries=2, retry_delay=0.01)
    def refund_payment(self, context, payment):
        _undo(context, "refund", payment)

    @step(order=3)
    def create_shipment(self, context):
        return _forward(context, 3, "ship")
