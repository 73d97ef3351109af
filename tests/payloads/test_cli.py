"""A 5 MB task output met from the command line, as a new user meets it."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from tests.cli.test_cli_run import deerflow
from tests.payloads.bigapp import BIG


def assert_reads_back(run_id: str, *, cwd: Path, env: dict[str, str] | None = None) -> None:
    """A later ``deerflow runs show --json`` reads the run's 5 MB output back whole."""
    shown = deerflow("runs", "show", run_id, "--json", cwd=cwd, env=env)
    assert shown.returncode == 0, shown.stderr
    result = json.loads(shown.stdout)["result"]
    assert result["tasks"]["render"]["output"] == "x" * (5 * 1024 * 1024)
    assert result["output"] == 5 * 1024 * 1024


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
    assert_reads_back(done.stdout.split()[2], cwd=tmp_path)


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
    assert_reads_back(done.stdout.split()[2], cwd=tmp_path, env=env)
