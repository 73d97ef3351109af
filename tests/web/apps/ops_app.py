"""Workflows the dashboard, API and CLI tests drive: a fan-out with a sub-workflow, a task that
fails until a flag file exists (to retry it), and one that waits (to cancel it)."""

# mypy: disable-error-code="name-defined"
# (the spec's samples as written: their class bodies use names the metaclass provides)

import os
import time
from pathlib import Path

from deerflow import NonRetryableError, Workflow
from deerflow.events import WebhookEvent

FLAGS = Path(os.environ.get("DEERFLOW_TEST_FLAGS", "."))

validation = Workflow(name="validate_batch")


@validation.task(id="check")
def check(context):
    return {"valid": len(context.input or [])}


etl = Workflow(name="etl")
etl.add_trigger(WebhookEvent(path="/hooks/etl"))


@etl.task(id="split")
def split(context):
    return {"chunks": [1, 2, 3, 4, 5]}


@etl.parallel_tasks(id="square", depends_on=["split"])
def square(chunk, context):
    return chunk * chunk


etl.sub_workflow(id="validate", workflow=validation, depends_on=["square"])


@etl.task(id="fragile", depends_on=["validate"])
def fragile(context):
    if not (FLAGS / "fixed").exists():
        raise NonRetryableError("the upstream service refused the batch")
    return {"loaded": sum(context.tasks["validate"].output.values())}


@etl.task(id="report", depends_on=["fragile"])
def report(context):
    return {"rows": context.tasks["fragile"].output["loaded"]}


waiting = Workflow(name="waiting")
waiting.add_trigger(WebhookEvent(path="/hooks/wait"))


@waiting.task(id="wait")
def wait(context):
    deadline = time.time() + 60
    while not (FLAGS / "release").exists() and time.time() < deadline:
        time.sleep(0.05)
    return "released"


@waiting.task(id="after", depends_on=["wait"])
def after(context):
    return "done"


# Waits for the signal "approve" (its data is the node's output), at most an hour.
approval = Workflow(name="approval")
approval.add_trigger(WebhookEvent(path="/hooks/approval"))
approval.wait_for_signal(id="go", name="approve", timeout="1h")


@approval.task(id="report", depends_on=["go"])
def report_approval(context):
    return {"approved_by": (context.tasks["go"].output or {}).get("by")}


# Waits for the InvoiceApproved event of the invoice its webhook names, at most a week.
invoice = Workflow(name="invoice")
invoice.add_trigger(WebhookEvent(path="/hooks/invoice"))
invoice.wait_for_event(
    id="approval",
    event="InvoiceApproved",
    match={"data.invoice_id": "trigger.body.invoice_id"},
    timeout="7d",
)


@invoice.task(id="book", depends_on=["approval"])
def book_invoice(context):
    return {"approved_by": context.tasks["approval"].output["data"]["by"]}


from deerflow import State, StateMachine, Transition  # noqa: E402

door = Workflow(name="door")


@door.state_machine
class Door(StateMachine):
    closed = State(initial=True)
    open_ = State(name="open")
    gone = State(final=True)

    open_door = Transition(source=closed, target=open_)
    close_door = Transition(source=open_, target=closed)
    remove = Transition(source=[closed, open_], target=gone)

    @on_transition(open_door)
    def log_open(self, context):
        (FLAGS / "opened").write_text(str(context.payload))


from deerflow import Schedule  # noqa: E402

nightly = Workflow(name="nightly")
nightly.add_trigger(Schedule(name="nightly-report", cron="0 3 * * *", timezone="Europe/Paris"))


@nightly.task(id="summarize")
def summarize(context):
    return context.trigger_event.scheduled_time.isoformat()
