"""An order saga whose effects land in the sink named by $SINK_DB; step 3 always fails.

The refund compensation writes $STARTED_FILE and then waits while $HOLD_FILE exists, so a
test can kill the worker in the middle of the rollback.
"""

# mypy: disable-error-code="name-defined"
# (the spec's samples as written: their class bodies use names the metaclass provides)

from __future__ import annotations

import os
import time
from pathlib import Path

from deerflow import Saga, Workflow
from tests.engine.apps.sink import Sink

SINK = Sink(os.environ["SINK_DB"])
workflow = Workflow(name="crashy_order_saga")


@workflow.saga
class OrderSaga(Saga):
    @step(order=1)
    def reserve_inventory(self, context):
        SINK.record(context.idempotency_key, context.attempt, "reserve")
        return {"id": "res-9"}

    @step(order=1, compensate="release_inventory")
    def release_inventory(self, context, reservation):
        SINK.record(context.idempotency_key, context.attempt, f"release:{reservation['id']}")

    @step(order=2)
    def charge_payment(self, context):
        SINK.record(context.idempotency_key, context.attempt, "charge")
        return {"id": "pay-9"}

    @step(order=2, compensate="refund_payment")
    def refund_payment(self, context, payment):
        Path(os.environ["STARTED_FILE"]).write_text(context.run_id)
        while Path(os.environ["HOLD_FILE"]).exists():
            time.sleep(0.02)
        SINK.record(context.idempotency_key, context.attempt, f"refund:{payment['id']}")

    @step(order=3)
    def create_shipment(self, context):
        raise RuntimeError("carrier rejected the address")
