"""``deerflow run`` as a user meets it: failures that name their cause, a broken workflow file,
and a wait that runs out, each read from a real ``deerflow`` process."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
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

ECHO = """
from deerflow import Workflow

wf = Workflow(name="echo")

@wf.task(id="echo")
def echo(context):
    return dict(context.params)
"""

SLOW = """
import time
from deerflow import Workflow

wf = Workflow(name="slow")

@wf.task(id="nap")
def nap(context):
    time.sleep(60)
"""


def deerflow(
    *args: str, cwd: Path, timeout: float = 90, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``deerflow ARGS`` in ``cwd``, as a user types it (the store defaults to ./deerflow.db),
    with ``env`` besides the bare minimum."""
    return subprocess.run(
        [sys.executable, "-m", "deerflow", *args],
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "COLUMNS": "120", **(env or {})},
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

    # A retry followed with nothing to run it: the wait ends in one line, naming what to start.
    retried = deerflow("runs", "retry", run_id, "--follow", "--timeout", "1", cwd=tmp_path)
    assert retried.returncode == 124
    assert retried.stdout == f"retry 1 requested for {run_id}\n"
    assert retried.stderr.splitlines()[-1] == (
        f"error: run {run_id} did not end within 1s; no process works on it now: start "
        f"`deerflow worker FILE.py`; see it with `deerflow runs show {run_id}`"
    )


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

    (tmp_path / "pricing.py").write_text(PRICING)
    done = deerflow("run", "pricing.py", "--input", "{bad", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("error: --input is not JSON: ") and done.stderr.count("\n") == 1


FORWARD = """
from deerflow import Workflow

wf = Workflow(name="forward")

@wf.task(id="report", depends_on=["{dep}"])
def report(context):
    return context.tasks["{dep}"].output + 1

@wf.task(id="load"{back})
def load(context):
    return 1
"""


def test_dependencies_may_name_later_tasks_a_loop_or_an_unknown_one_fails_in_one_line(
    tmp_path: Path,
):
    (tmp_path / "forward.py").write_text(FORWARD.format(dep="load", back=""))
    done = deerflow("run", "forward.py", "--quiet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith("completed run ")
    assert done.stdout.splitlines()[-1] == "2"

    (tmp_path / "loop.py").write_text(FORWARD.format(dep="load", back=', depends_on=["report"]'))
    done = deerflow("run", "loop.py", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        "error: workflow 'forward', task 'load': dependency cycle: report → load → report\n"
    )

    (tmp_path / "itself.py").write_text(FORWARD.format(dep="report", back=""))
    done = deerflow("run", "itself.py", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        "error: workflow 'forward', task 'report': dependency cycle: report → report\n"
    )

    (tmp_path / "unknown.py").write_text(FORWARD.format(dep="lode", back=""))
    done = deerflow("run", "unknown.py", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        "error: workflow 'forward', task 'report': depends_on names unknown task 'lode'"
        " (known: load, report)\n"
    )


def test_a_param_is_json_or_text_and_one_without_a_value_is_a_one_line_error(tmp_path: Path):
    (tmp_path / "echo.py").write_text(ECHO)
    done = deerflow(
        "run", "echo.py", "--param", "n=3", "--param", "who=ann", "--json", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["output"] == {"n": 3, "who": "ann"}

    done = deerflow("run", "echo.py", "--param", "n", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.strip() == "error: --param expects key=value, got 'n'"


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


SLOW_PIPELINE = """
import time
from deerflow import Pipeline, Workflow

workflow = Workflow(name="slow_stream")

@workflow.pipeline()
class Slow(Pipeline):
    @stage(parallelism=1)
    def nap(self, item):
        time.sleep(0.1 if item == 1 else 60)
        return item
"""


def test_a_pipeline_past_its_timeout_says_how_far_it_got_in_one_line(tmp_path: Path):
    (tmp_path / "stream.py").write_text(SLOW_PIPELINE)
    began = time.monotonic()
    done = deerflow("run", "stream.py", "--input", "[1, 2, 3]", "--timeout", "2", cwd=tmp_path)
    took = time.monotonic() - began
    assert (done.returncode, done.stdout) == (124, ""), done.stderr
    assert done.stderr == (
        "error: pipeline slow_stream did not finish within 2s: 1 item completed, 2 abandoned "
        "in flight; a pipeline keeps no history: run stream.py again with a longer --timeout\n"
    )
    assert took < 30, f"exited {took:.0f}s after the timeout"  # not after the 60 s stage

    done = deerflow("run", "stream.py", "--input", "[1]", "--timeout", "30", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("completed run ") and "runs show" not in done.stdout


def test_an_ended_run_shows_no_progress_bars_and_says_completed_once(tmp_path: Path):
    app = ROOT / "examples" / "dynamic_workflows.py"
    done = deerflow("run", f"{app}:dynamic_etl", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("completed run ") == 1 and "run completed" not in done.stderr
    tasks = [line.split("│")[1].strip() for line in done.stderr.splitlines() if "│" in line]
    # Dynamic children right after their node, before the task that depends on the node.
    assert tasks[0:2] == ["discover_sources", "process_sources"]
    assert all(t.startswith("process_sources/") for t in tasks[2:-1]) and len(tasks) > 3
    assert tasks[-1] == "aggregate"

    run_id = done.stdout.split()[2]
    shown = deerflow("runs", "show", run_id, cwd=tmp_path)
    header = next(line for line in shown.stdout.splitlines() if "task" in line)
    assert [h.strip() for h in header.split("┃")[1:-1]] == [
        "task",
        "status",
        "attempts",
        "time",
        "error",
    ]
    assert "━━━━━━━━━━━━━━━━━━━━━━━━ " not in shown.stdout.split("┡", 1)[1]  # no bar in rows
    assert "completed 3/3" in shown.stdout  # a node's children, counted in its status


def test_help_shows_no_type_beside_plain_flags(tmp_path: Path):
    done = deerflow("runs", "show", "--help", cwd=tmp_path)
    assert done.returncode == 0
    lines = done.stdout.splitlines()
    json_flag = next(line for line in lines if "│ --json " in line)
    assert json_flag.split()[1:3] == ["--json", "Machine-readable"]  # no "<bool>" between
    assert "<bool>" not in done.stdout
    assert "<float>" in next(line for line in lines if "│ --timeout " in line)  # a value: typed


SEVERAL_APPS = ("--app", "billing.py", "--app", "shipping.py")


def test_ui_takes_several_app_files(tmp_path: Path):
    for name in ("billing", "shipping"):
        (tmp_path / f"{name}.py").write_text(
            f"from deerflow import Workflow\n{name} = Workflow(name={name!r})\n"
            f"{name}.task(id='only')(lambda context: None)\n"
        )
    assert deerflow("run", "billing.py", cwd=tmp_path).returncode == 0  # creates the store
    ui = subprocess.Popen(
        [sys.executable, "-m", "deerflow", "ui", "--port", "0", *SEVERAL_APPS],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert ui.stdout is not None
        line = ui.stdout.readline()
        assert line.startswith("deerflow ui: listening on http://127.0.0.1:")
        url = line.split()[-1]
        with urllib.request.urlopen(f"{url}/api/workflows", timeout=30) as answer:
            names = sorted(w["name"] for w in json.load(answer)["workflows"])
        assert names == ["billing", "shipping"]
    finally:
        ui.terminate()
        ui.wait(30)


def test_an_unreachable_kafka_store_is_one_line_for_each_command(tmp_path: Path):
    from deerflow.testing import free_port

    store = f"kafka://127.0.0.1:{free_port()}"  # nothing listens there
    for command in (
        ["runs", "list"],
        ["runs", "show", "r-1"],
        ["runs", "send", "r-1", "confirm"],
        ["dlq", "list"],
    ):
        done = deerflow(*command, "--store", store, cwd=tmp_path)
        assert (done.returncode, done.stdout) == (2, ""), command
        (line,) = done.stderr.splitlines()  # no library's log line beside it
        assert line.startswith(f"error: cannot reach Kafka at {store}: "), line
