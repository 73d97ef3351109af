"""A 5 MB task output met from the command line, as a new user meets it."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.cli.test_cli_run import deerflow

BIG = """
from deerflow import Workflow

wf = Workflow(name="big")

@wf.task(id="render")
def render(context):
    return "x" * (5 * 1024 * 1024)

@wf.task(id="measure", depends_on=["render"])
def measure(context):
    return len(context.tasks["render"].output)
"""


def test_on_the_embedded_store_a_5mb_output_completes_and_its_blob_sits_beside_the_file(
    tmp_path: Path,
):
    (tmp_path / "big.py").write_text(BIG)
    done = deerflow("run", "big.py", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith("completed run ")
    assert str(5 * 1024 * 1024) in done.stdout  # the next task read the whole output
    blobs = [p for p in (tmp_path / "deerflow.db.blobs").rglob("*") if p.is_file()]
    assert any(p.stat().st_size > 5 * 1024 * 1024 for p in blobs)
    assert (tmp_path / "deerflow.db").stat().st_size < 2_000_000


@pytest.mark.kafka
@pytest.mark.timeout(300)  # two `deerflow run` processes, each joining Kafka groups
def test_on_kafka_without_a_blob_store_a_5mb_output_fails_its_task_in_one_line(
    tmp_path: Path, kafka_url: str
):
    (tmp_path / "big.py").write_text(BIG)
    env = {"DEERFLOW_PREFIX": f"t{uuid.uuid4().hex[:10]}", "DEERFLOW_STORE": kafka_url}
    done = deerflow("run", "big.py", "--timeout", "90", cwd=tmp_path, env=env, timeout=120)
    assert done.returncode == 1, done.stderr
    status, error = done.stdout.splitlines()[:2]
    assert status.startswith("failed run ")
    assert error.startswith("task 'render' failed: task 'render' of run ")
    assert "returned 5.2 MB, more than the 1.0 MB a payload may be on this log" in error
    assert "DEERFLOW_BLOBS" in error and "Traceback" not in done.stderr

    env["DEERFLOW_BLOBS"] = f"file://{tmp_path / 'blobs'}"
    done = deerflow("run", "big.py", "--timeout", "90", cwd=tmp_path, env=env, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("completed run ")
    assert str(5 * 1024 * 1024) in done.stdout
