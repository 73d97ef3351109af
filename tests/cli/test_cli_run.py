"""``deerflow run`` as a user meets it: failures that name their cause, a broken workflow file,
and a wait that runs out, each read from a real ``deerflow`` process."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PRICING = """
from deerflow import Workflow

wf = Workflow(name="pricing")

@wf.task(id="load")
def load(context):
    return {"body": {}}

@wf.task(id="price", depends_on=["load"], retries=1, retry_delay=0)
def price(context):
    return context.tasks["load"].output["body"]["lines"]
"""

SLOW = """
import time
from deerflow import Workflow

wf = Workflow(name="slow")

@wf.task(id="nap")
def nap(context):
    time.sleep(60)
"""


def deerflow(*args: str, cwd: Path, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """``deerflow ARGS`` in ``cwd``, as a user types it (the store defaults to ./deerflow.db)."""
    return subprocess.run(
        [sys.executable, "-m", "deerflow", *args],
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "COLUMNS": "120"},
        text=True,
        capture_output=True,
        timeout=timeout,
    )


def test_a_failed_run_names_the_task_the_exception_and_where_to_look(tmp_path: Path):
    (tmp_path / "pricing.py").write_text(PRICING)
    done = deerflow("run", "pricing.py", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    status, error, hint = done.stdout.splitlines()
    assert status.startswith("failed run ") and status.endswith(" of pricing")
    run_id = status.split()[2]
    assert error == "task 'price' failed: KeyError: 'lines'"
    assert hint.startswith(f"see its attempts and traceback: deerflow runs show {run_id}")
    assert "null" not in done.stdout and "Traceback" not in done.stderr

    shown = deerflow("runs", "show", run_id, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "KeyError: 'lines'" in shown.stdout
    # The last attempt's traceback, from the user's file, without deerflow's frames.
    assert "traceback of task 'price', attempt 2:" in shown.stdout
    assert 'pricing.py", line 12, in price' in shown.stdout
    assert "deerflow/engine" not in shown.stdout

    listed = deerflow("runs", "list", cwd=tmp_path)
    assert "KeyError: 'lines'" in listed.stdout


def test_a_broken_workflow_file_shows_the_users_line_and_error_only(tmp_path: Path):
    (tmp_path / "syntax.py").write_text("from deerflow import Workflow\n\ndef f(:\n    pass\n")
    done = deerflow("run", "syntax.py", cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [
        "error: cannot load syntax.py:",
        f'  File "{tmp_path / "syntax.py"}", line 3',
        "    def f(:",
        "          ^",
        "SyntaxError: invalid syntax",
    ]

    (tmp_path / "imports.py").write_text("import no_such_module_here\n")
    done = deerflow("worker", "imports.py", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "error: cannot load imports.py:",
        "Traceback (most recent call last):",
        f'  File "{tmp_path / "imports.py"}", line 1, in <module>',
        "    import no_such_module_here",
        "ModuleNotFoundError: No module named 'no_such_module_here'",
    ]


def test_a_run_past_its_timeout_says_so_in_one_line_and_exits_at_once(tmp_path: Path):
    (tmp_path / "slow.py").write_text(SLOW)
    for quiet in ([], ["--quiet"]):
        began = time.monotonic()
        done = deerflow("run", "slow.py", "--timeout", "1", *quiet, cwd=tmp_path)
        took = time.monotonic() - began
        assert done.returncode == 124, done.stderr
        (line,) = [ln for ln in done.stderr.splitlines() if ln.startswith("error:")]
        assert "did not finish within 1s; it stays in the store" in line
        assert "`deerflow runs show " in line and "`deerflow worker slow.py`" in line
        assert "Traceback" not in done.stderr
        assert took < 30, f"exited {took:.0f}s after the timeout"  # not after the 60 s task
