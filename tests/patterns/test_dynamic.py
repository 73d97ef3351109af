"""Dynamic tasks: specs generated at run time, run as scripts, callables or custom types."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from deerflow import DynamicTasks, Engine, Workflow
from deerflow.cli._loader import load_module_workflows
from deerflow.core import history as h
from tests.engine.apps.sink import Sink
from tests.logs import history
from tests.processes import wait_for_file, worker_pool

APPS = Path(__file__).parent / "apps"
SCRIPT = str(APPS / "emit_json.py")


@DynamicTasks.function(name="scale")
def scale_value(value, factor=1, context=None):
    return {"value": value * factor, "task": context.task_id if context else None}


async def run(wf: Workflow, store: str = "memory://", **start):
    async with Engine(store, [wf]) as engine:
        return await (await engine.start(wf, **start)).result(timeout=60)


def generated(specs_of, *, retries=0, timeout=None, name="dyn"):
    """A workflow: discover -> dynamic node generating ``specs_of(sources)`` -> aggregate."""
    wf = Workflow(name=name)

    @wf.task(id="discover")
    def discover(context):
        return {"sources": ["alpha", "beta"]}

    @wf.dynamic_tasks(
        id="process", depends_on=["discover"], retries=retries, retry_delay=0.01, timeout=timeout
    )
    def generate(context):
        return specs_of(context.tasks["discover"].output["sources"])

    @wf.task(id="aggregate", depends_on=["process"])
    def aggregate(context):
        return dict(context.dynamic_outputs["process"])

    return wf


async def test_generated_scripts_and_callables_run_and_fan_in_by_generated_id(store):
    def specs(sources):
        scripts = [
            {
                "id": f"process_{s}",
                "type": "python",
                "config": {"script": "apps/emit_json.py", "args": ["ok", s, 7]},
            }
            for s in sources
        ]
        return [
            *scripts,
            DynamicTasks.call("scaled", "scale", 21, factor=2, depends_on=["process_alpha"]),
        ]

    result = await run(generated(specs), store, params={"day": "d1"})
    assert result.status == "completed", result.error
    out = result.output
    assert list(out) == ["process_alpha", "process_beta", "scaled"]
    assert out["process_alpha"] == {
        "args": ["alpha", "7"],
        "run": result.run_id,
        "params": {"day": "d1"},
    }
    assert out["scaled"] == {"value": 42, "task": "process/scaled"}
    assert result.tasks["process/process_beta"].status == "completed"


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("fail", "exited with 3: cannot open bucket s3://missing"),
        ("nojson", "is not JSON: 'done, but not as JSON'"),
    ],
)
async def test_a_failing_script_fails_the_node_with_the_reason_after_its_retries(mode, expected):
    wf = generated(lambda sources: [DynamicTasks.python("bad", SCRIPT, [mode])], retries=1)
    result = await run(wf)
    assert result.status == "failed"
    assert result.failed_task == "process"
    assert expected in (result.tasks["process/bad"].error or "")
    assert result.tasks["process/bad"].attempts == 2
    assert result.tasks["aggregate"].status == "skipped"


async def test_a_script_past_the_node_timeout_is_killed(tmp_path):
    pid_file = tmp_path / "pid"
    wf = generated(
        lambda sources: [DynamicTasks.python("slow", SCRIPT, ["sleep", str(pid_file)])], timeout=1.5
    )
    result = await run(wf)
    assert result.status == "failed"
    assert "timed out" in (result.tasks["process/slow"].error or "")
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed and reaped, not left sleeping


async def test_a_bad_spec_fails_the_node_at_once_naming_the_spec():
    wf = generated(lambda sources: [{"id": "x", "type": "ftp", "config": {}}], retries=3)
    result = await run(wf)
    assert result.status == "failed"
    error = result.tasks["process"].error or ""
    assert "spec #0 ('x')" in error and "unknown dynamic task type 'ftp'" in error
    assert "python" in error  # the known types are listed
    assert result.tasks["process"].attempts == 1  # not retried: it would generate the same


async def test_a_registered_task_type_runs_generated_specs_of_that_type():
    seen = []

    def check(config):
        if "word" not in config:
            raise ValueError("config.word is required")

    @DynamicTasks.register("shout", validate=check)
    async def shout(spec, context):
        seen.append(spec.id)
        await asyncio.sleep(0)
        return spec.config["word"].upper()

    ok = generated(
        lambda sources: [{"id": s, "type": "shout", "config": {"word": s}} for s in sources]
    )
    result = await run(ok)
    assert result.output == {"alpha": "ALPHA", "beta": "BETA"}
    assert sorted(seen) == ["alpha", "beta"]

    bad = generated(lambda sources: [{"id": "x", "type": "shout", "config": {}}], name="bad")
    failed = await run(bad)
    assert "config.word is required" in (failed.tasks["process"].error or "")


def hold_file() -> tuple[str, Path]:
    """Create $HOLD_FILE (generated tasks wait while it exists); return it and $STARTED_FILE."""
    Path(os.environ["HOLD_FILE"]).write_text("hold")
    return os.environ["HOLD_FILE"], Path(os.environ["STARTED_FILE"])


@pytest.fixture
def sqlite_workers(tmp_path, monkeypatch):
    yield from worker_pool(f"sqlite:///{tmp_path / 'events.db'}", tmp_path, monkeypatch)


async def test_the_generated_list_is_recorded_and_not_generated_again_after_a_crash(sqlite_workers):
    """A worker is SIGKILLed while generated tasks run; a new worker finishes the same specs."""
    pool = sqlite_workers
    hold, started = hold_file()
    workflows, wf = load_module_workflows(str(APPS / "dynamic_app.py"))
    assert wf is not None
    first = pool.start(APPS / "dynamic_app.py")
    async with Engine(pool.store, workflows, orchestrate=False, work=False) as client:
        handle = await client.start(wf)
        await wait_for_file(started, timeout=60, pool=pool)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        os.unlink(hold)
        pool.start(APPS / "dynamic_app.py")
        result = await handle.result(timeout=90)
        events = await history(client, handle.run_id)
    assert result.status == "completed", pool.logs()
    assert result.output == {"squares": 0 + 1 + 4 + 9, "script": ["from-worker"]}
    sink = Sink(os.environ["SINK_DB"])
    assert sink.executions(f"{handle.run_id}/generator") == 1, (sink.pids(), pool.logs())
    plans = [e for e in events if isinstance(e, h.TaskCompleted) and e.expansion]
    assert len(plans) == 1 and len(plans[0].expansion or ()) == 5
