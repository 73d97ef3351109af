"""The pattern examples run as a user runs them: ``deerflow run examples/FILE.py:WORKFLOW``."""

from __future__ import annotations

import pytest

from tests.example_runs import deerflow_run


def test_dynamic_etl_runs_one_generated_script_task_per_discovered_source(tmp_path):
    result = deerflow_run("dynamic_workflows.py:dynamic_etl", tmp_path)
    assert result["output"] == {"total_records": 40 + 25 + 60}  # data-* buckets, not logs-web
    generated = [t for t in result["tasks"] if t.startswith("process_sources/")]
    assert generated == [
        "process_sources/process_data_customers",
        "process_sources/process_data_events",
        "process_sources/process_data_orders",
    ]
    assert result["tasks"]["process_sources/process_data_events"]["output"] == {
        "source": "data-events",
        "files": 1,
        "count": 60,
    }


@pytest.mark.parametrize(
    ("target", "params", "expected"),
    [
        (
            "dynamic_workflows.py:s3_to_warehouse",
            [],
            {"destination": "snowflake", "loaded": 3, "parallelism": 5},
        ),
        (
            "dynamic_workflows.py:gcs_to_warehouse",
            ["destination=redshift", "parallelism=2"],
            {"destination": "redshift", "loaded": 3, "parallelism": 2},
        ),
    ],
)
def test_template_instances_run_with_their_parameters(tmp_path, target, params, expected):
    assert deerflow_run(target, tmp_path, *params)["output"] == expected


def test_nested_sub_workflow_validates_before_transform(tmp_path):
    result = deerflow_run("sub_workflows.py:etl_with_validation", tmp_path)
    assert result["output"]["total_eur"] == 468.25
    assert [r["id"] for r in result["output"]["rows"]] == [1, 3, 5]


def test_composed_pipeline_chains_three_workflows_by_name(tmp_path):
    result = deerflow_run("sub_workflows.py:full_pipeline", tmp_path)
    assert result["output"] == {"loaded": 3, "total_eur": 468.25}
    assert list(result["tasks"]) == ["extract", "transform", "load"]


@pytest.mark.parametrize(
    "target", ["mapreduce.py:distributed_analysis", "mapreduce.py:distributed_analysis_combined"]
)
def test_map_reduce_counts_error_types_across_the_day(tmp_path, target):
    result = deerflow_run(target, tmp_path, "date=2026-11-29")
    output = result["output"]
    lines = [
        line
        for f in sorted((tmp_path / "logs" / "2026-11-29").glob("*.log"))
        for line in f.read_text().splitlines()
        if " ERROR " in line
    ]
    assert output["total_errors"] == len(lines) > 0
    assert sum(output["by_type"].values()) == len(lines)
    maps = [t for t in result["tasks"] if t.startswith("analyze_logs/map-")]
    assert len(maps) == 100  # 120 files grouped into at most partitions=100 map tasks


@pytest.mark.parametrize(
    "target",
    ["fan_out_fan_in.py:parallel_processing", "fan_out_fan_in.py:parallel_processing_functional"],
)
def test_fan_out_fan_in_merges_every_chunk(tmp_path, target):
    output = deerflow_run(target, tmp_path)["output"]
    assert output["chunks"] == 10 and output["readings"] == 1000
    assert set(output["mean_by_sensor"]) == {f"s{i}" for i in range(7)}
