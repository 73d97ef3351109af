"""Sub-workflows and composition: workflows as nodes of other workflows.

The spec's "Nested Workflows" and "Workflow Composition" samples as written, plus local
stand-ins for the helpers they call. Run them with::

    deerflow run examples/sub_workflows.py:etl_with_validation
    deerflow run examples/sub_workflows.py:full_pipeline

``etl_with_validation`` runs ``data_validation`` as a child run (its own history, run id
``<run>.validate.1``) on the output of ``extract``; ``transform`` reads the child's output.
``full_pipeline`` chains three workflows found by name, each as a child run, the output of one
being the input of the next.
"""

from __future__ import annotations

from typing import Any

from deerflow import SubWorkflow, Workflow, compose_workflows  # noqa: F401 - as the spec

ORDERS = [
    {"id": 1, "amount": 120.0, "currency": "EUR"},
    {"id": 2, "amount": -5.0, "currency": "EUR"},
    {"id": 3, "amount": 42.5, "currency": "usd"},
    {"id": 4, "amount": 99.9},
    {"id": 5, "amount": 310.0, "currency": "EUR"},
]
RATES = {"EUR": 1.0, "USD": 0.9}


def fetch_data() -> dict[str, Any]:
    """Stand-in for reading an upstream system."""
    return {"records": [dict(order) for order in ORDERS]}


def validate_schema(data: dict[str, Any]) -> dict[str, Any]:
    """Keep records with every field; upper-case the currency."""
    good = [
        {**r, "currency": r["currency"].upper()}
        for r in data["records"]
        if {"id", "amount", "currency"} <= set(r)
    ]
    return {"records": good, "rejected_schema": len(data["records"]) - len(good)}


def validate_quality(data: dict[str, Any]) -> dict[str, Any]:
    """Keep complete records with a positive amount and a known currency."""
    records = validate_schema(data)["records"]
    good = [r for r in records if r["amount"] > 0 and r["currency"] in RATES]
    return {"records": good, "rejected": len(data["records"]) - len(good)}


def transform_data(validated: dict[str, Any]) -> dict[str, Any]:
    """Convert amounts to EUR."""
    rows = [
        {"id": r["id"], "eur": round(r["amount"] * RATES[r["currency"]], 2)}
        for r in validated["records"]
    ]
    return {"rows": rows, "total_eur": round(sum(r["eur"] for r in rows), 2)}


# -- Nested workflows (the spec's sample) -------------------------------------------------------

# Define reusable sub-workflow
validation_workflow = Workflow(name="data_validation")


@validation_workflow.task(id="schema_check")
def check_schema(context):
    return validate_schema(context.input)


@validation_workflow.task(id="quality_check", depends_on=["schema_check"])
def check_quality(context):
    return validate_quality(context.input)


# Main workflow using sub-workflow
main_workflow = Workflow(name="etl_with_validation")


@main_workflow.task(id="extract")
def extract(context):
    return fetch_data()


@main_workflow.sub_workflow(id="validate", workflow=validation_workflow, depends_on=["extract"])
@main_workflow.task(id="transform", depends_on=["validate"])
def transform(context):
    validated_data = context.tasks["validate"].output
    return transform_data(validated_data)


# -- The workflows composed below, defined by name -------------------------------------------

extraction_workflow = Workflow(name="extraction_workflow")


@extraction_workflow.task(id="fetch")
def fetch(context):
    return fetch_data()


transformation_workflow = Workflow(name="transformation_workflow")


@transformation_workflow.task(id="clean")
def clean(context):
    return validate_quality(context.input)


@transformation_workflow.task(id="convert", depends_on=["clean"])
def convert(context):
    return transform_data(context.tasks["clean"].output)


loading_workflow = Workflow(name="loading_workflow")


@loading_workflow.task(id="write")
def write(context):
    rows = context.input["rows"]
    return {"loaded": len(rows), "total_eur": context.input["total_eur"]}


# -- Workflow composition (the spec's sample) ---------------------------------------------------

# Compose multiple workflows
composed = compose_workflows(
    name="full_pipeline",
    workflows=[
        {"workflow": "extraction_workflow", "alias": "extract"},
        {"workflow": "transformation_workflow", "alias": "transform", "depends_on": ["extract"]},
        {"workflow": "loading_workflow", "alias": "load", "depends_on": ["transform"]},
    ],
    connections={"transform.input": "extract.output", "load.input": "transform.output"},
)
