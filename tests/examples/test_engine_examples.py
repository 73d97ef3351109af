"""The examples of the engine's own sections run, as a newcomer would run them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def deerflow(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deerflow", *args],
        cwd=cwd,
        text=True,
        capture_output=True,
        timeout=120,
    )


def test_the_quickstart_runs_end_to_end_with_the_cli(tmp_path):
    done = deerflow(
        "run", str(ROOT / "examples" / "quickstart.py"), "--param", "min_amount=20", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert "completed" in done.stdout
    report = json.loads((tmp_path / "quickstart-report.json").read_text())
    assert report["orders"] == 194 and report["rejected"] == ["o9999"]
    assert (tmp_path / "deerflow.db").exists()
    assert "clean" in done.stderr and "attempts" in done.stderr  # the live progress table


def test_a_failed_run_exits_non_zero(tmp_path):
    done = deerflow(
        "run",
        str(ROOT / "examples" / "saga.py"),
        "--param",
        "fail_at=shipping",
        "--param",
        'items=["book"]',
        "--param",
        "customer_id=c1",
        "--param",
        "amount=10",
        "--param",
        "address=here",
        cwd=tmp_path,
    )
    assert done.returncode == 1
    assert "compensated" in done.stdout


def test_the_saga_example_rolls_back_in_reverse_order(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "saga.py"), "shipping"],
        cwd=tmp_path,
        text=True,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("compensated")
    assert done.stdout.index("payment.refund") < done.stdout.index("inventory.release")


def test_the_state_machine_example_delivers_and_refuses_a_late_cancel(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "state_machine.py")],
        cwd=tmp_path,
        text=True,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "refused:" in done.stdout and "not allowed from state 'processing'" in done.stdout
    assert "completed delivered" in done.stdout
