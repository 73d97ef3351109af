"""Dynamic workflows: tasks generated at run time, and parameterized workflow templates.

The spec's "Runtime Task Generation" and "Parameterized Workflow Templates" samples as written,
plus local stand-ins for the helpers they call. Run them with::

    deerflow run examples/dynamic_workflows.py:dynamic_etl
    deerflow run examples/dynamic_workflows.py:s3_to_warehouse
    deerflow run examples/dynamic_workflows.py:gcs_to_warehouse --param destination=redshift

``dynamic_etl`` discovers the "buckets" whose name starts with ``data-`` (directories under
``./buckets``, created with sample files on first use, standing in for S3), generates one
task per bucket that runs ``process_source.py`` as a subprocess, and adds up their counts.
The generated list is recorded in the run's history: a restarted run does not generate it
again. The templates' runs see their parameters in ``context.params``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deerflow import DynamicTasks, Workflow, WorkflowTemplate  # noqa: F401 - as the spec

SAMPLE_BUCKETS = {"data-orders": 40, "data-customers": 25, "data-events": 60, "logs-web": 10}


def list_s3_buckets(prefix: str) -> list[dict[str, Any]]:
    """Stand-in for S3's ListBuckets: directories under ./buckets whose name has ``prefix``."""
    root = Path("buckets").resolve()
    for name, rows in SAMPLE_BUCKETS.items():
        bucket = root / name
        if not bucket.exists():
            bucket.mkdir(parents=True)
            lines = ["id,value"] + [f"{i},{i * 7 % 13}" for i in range(rows)]
            (bucket / "part-0000.csv").write_text("\n".join(lines) + "\n")
    return [
        {"name": p.name.replace("-", "_"), "uri": p.as_uri()}
        for p in sorted(root.iterdir())
        if p.is_dir() and p.name.startswith(prefix)
    ]


# -- Runtime task generation (the spec's sample) --------------------------------------------

workflow = Workflow(name="dynamic_etl")


@workflow.task(id="discover_sources")
def discover_sources(context):
    """Discover data sources at runtime."""
    sources = list_s3_buckets(prefix="data-")
    return {"sources": sources}


@workflow.dynamic_tasks(id="process_sources", depends_on=["discover_sources"])
def generate_processing_tasks(context):
    """Generate a task for each discovered source."""
    sources = context.tasks["discover_sources"].output["sources"]

    tasks = []
    for source in sources:
        tasks.append(
            {
                "id": f"process_{source['name']}",
                "type": "python",
                "config": {"script": "process_source.py", "args": [source["uri"]]},
            }
        )

    return tasks


@workflow.task(id="aggregate", depends_on=["process_sources"])
def aggregate_results(context):
    """Aggregate results from all dynamic tasks."""
    results = []
    for task_id, output in context.dynamic_outputs["process_sources"].items():  # noqa: B007
        results.append(output)
    return {"total_records": sum(r["count"] for r in results)}


# -- Parameterized workflow templates (the spec's sample, with bodies filled in) --------------

template = WorkflowTemplate(
    name="data_pipeline_template",
    parameters={
        "source_type": {"type": "string", "enum": ["s3", "gcs", "azure"]},
        "destination": {"type": "string"},
        "parallelism": {"type": "integer", "default": 5},
    },
)


@template.task(id="extract")
def extract(context):
    source_type = context.params["source_type"]
    # Extract based on source type
    return {"source_type": source_type, "rows": [f"{source_type}-row-{i}" for i in range(3)]}


@template.task(id="transform", depends_on=["extract"])
def transform(context):
    rows = context.tasks["extract"].output["rows"]
    return {"rows": [row.upper() for row in rows]}


@template.task(id="load", depends_on=["transform"])
def load(context):
    destination = context.params["destination"]
    rows = context.tasks["transform"].output["rows"]
    return {
        "destination": destination,
        "loaded": len(rows),
        "parallelism": context.params["parallelism"],
    }


# Instantiate for different configurations
s3_pipeline = template.instantiate(
    name="s3_to_warehouse", parameters={"source_type": "s3", "destination": "snowflake"}
)

gcs_pipeline = template.instantiate(
    name="gcs_to_warehouse", parameters={"source_type": "gcs", "destination": "bigquery"}
)
