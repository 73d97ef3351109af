"""Quickstart: a five-task ETL over a CSV of orders, on the embedded SQLite store.

    deerflow run examples/quickstart.py --param min_amount=20

extract -> clean -> (revenue_by_region, top_customers) -> report. ``clean`` fails on its
first attempt (a stand-in for a flaky upstream) and succeeds on the retry deerflow schedules.
"""

from __future__ import annotations

import asyncio
import csv
import json
from pathlib import Path

from deerflow import Workflow

DATA = Path(__file__).parent / "data" / "orders.csv"

workflow = Workflow(name="quickstart_orders", description="Orders CSV to a revenue report")


@workflow.task(id="extract")
def extract(context):
    """Read the raw orders."""
    with DATA.open(newline="") as f:
        rows = list(csv.DictReader(f))
    context.logger.info("read %d rows", len(rows))
    return {"rows": rows}


@workflow.task(id="clean", depends_on=["extract"], retries=2, retry_delay=0.2)
def clean(context):
    """Drop malformed rows and small orders; the first attempt simulates a transient error."""
    if context.attempt == 1:
        raise ConnectionError("schema registry unavailable (simulated; retried)")
    minimum = float(context.params.get("min_amount", 0))
    good, rejected = [], []
    for row in context.tasks["extract"].output["rows"]:
        try:
            amount = float(row["amount"])
        except ValueError:
            rejected.append(row["order_id"])
            continue
        if amount >= minimum:
            good.append({**row, "amount": amount})
    return {"orders": good, "rejected": rejected}


@workflow.task(id="revenue_by_region", depends_on=["clean"])
async def revenue_by_region(context):
    """Sum revenue per region."""
    await asyncio.sleep(0.3)  # an async task: runs on the event loop
    totals: dict[str, float] = {}
    for order in context.tasks["clean"].output["orders"]:
        totals[order["region"]] = round(totals.get(order["region"], 0.0) + order["amount"], 2)
    return dict(sorted(totals.items()))


@workflow.task(id="top_customers", depends_on=["clean"])
def top_customers(context):
    """The five customers with the highest spend."""
    spend: dict[str, float] = {}
    for order in context.tasks["clean"].output["orders"]:
        spend[order["customer"]] = spend.get(order["customer"], 0.0) + order["amount"]
    top = sorted(spend.items(), key=lambda kv: kv[1], reverse=True)[:5]
    return [{"customer": c, "spend": round(s, 2)} for c, s in top]


@workflow.task(id="report", depends_on=["revenue_by_region", "top_customers"])
def report(context):
    """Write the report next to the working directory and return its summary."""
    summary = {
        "orders": len(context.tasks["clean"].output["orders"]),
        "rejected": context.tasks["clean"].output["rejected"],
        "revenue_by_region": context.tasks["revenue_by_region"].output,
        "top_customer": context.tasks["top_customers"].output[0],
    }
    Path("quickstart-report.json").write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    result = workflow.run(params={"min_amount": 20})
    print(result.status, json.dumps(result.output, indent=2))
