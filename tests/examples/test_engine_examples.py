"""The examples of the engine's own sections run, as a newcomer would run them."""

from __future__ import annotations

import json

from tests.example_runs import EXAMPLES, run_cli, run_example


def test_the_quickstart_runs_end_to_end_with_the_cli(tmp_path):
    done = run_cli("run", str(EXAMPLES / "quickstart.py"), "--param", "min_amount=20", cwd=tmp_path)
    assert "completed" in done.stdout
    report = json.loads((tmp_path / "quickstart-report.json").read_text())
    assert report["orders"] == 194 and report["rejected"] == ["o9999"]
    assert (tmp_path / "deerflow.db").exists()
    assert "clean" in done.stderr and "attempts" in done.stderr  # the live progress table


def test_a_failed_run_exits_non_zero(tmp_path):
    done = run_cli(
        "run",
        str(EXAMPLES / "saga.py"),
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
        expect=1,
    )
    assert "compensated" in done.stdout


def test_the_saga_example_rolls_back_in_reverse_order(tmp_path):
    done = run_example("saga.py", "shipping", cwd=tmp_path)
    assert done.stdout.startswith("compensated")
    assert done.stdout.index("payment.refund") < done.stdout.index("inventory.release")


def test_the_state_machine_example_delivers_and_refuses_a_late_cancel(tmp_path):
    done = run_example("state_machine.py", cwd=tmp_path)
    assert "refused:" in done.stdout and "not allowed from state 'processing'" in done.stdout
    assert "completed delivered" in done.stdout
