"""deerflow.testing.WorkerProcesses: a user's workflow runs in a real ``deerflow worker``
process, which the test can kill and stop."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from deerflow import Engine
from deerflow.cli._loader import load_module_workflows
from deerflow.testing import WorkerProcesses

APP = """
import os

from deerflow import Workflow

greet = Workflow(name="greet")


@greet.task(id="hello")
def hello(context):
    return {"pid": os.getpid(), "greeting": os.environ.get("GREETING", "hello")}
"""


@pytest.fixture
def app(tmp_path: Path) -> Path:
    path = tmp_path / "greet_app.py"
    path.write_text(APP)
    return path


async def test_a_worker_process_runs_the_workflow_and_dies_when_killed(app, tmp_path):
    store = f"sqlite:///{tmp_path / 'events.db'}"
    workflows, wf = load_module_workflows(str(app))
    assert wf is not None
    with WorkerProcesses(tmp_path / "logs", store=store) as workers:
        worker = workers.start_worker(app, concurrency=2, env={"GREETING": "hi"})
        async with Engine(store, workflows, orchestrate=False, work=False) as client:
            result = await (await client.start(wf)).result(timeout=60)
        assert result.status == "completed", workers.logs()
        assert result.output == {"pid": worker.pid, "greeting": "hi"}  # not run in this process
        assert workers.alive() and workers.serving() == 1

        assert workers.kill() is worker
        assert worker.returncode == -signal.SIGKILL
        assert not workers.alive() and workers.procs == [] and workers.serving() == 0
        assert f"--- worker-0.log (pid {worker.pid}, exit {-signal.SIGKILL})" in workers.logs()
        assert "worker on" in workers.logs()  # its output up to the kill (rich wraps the rest)


async def test_stop_lets_a_worker_drain_and_exit_by_itself(app, tmp_path):
    store = f"sqlite:///{tmp_path / 'events.db'}"
    async with WorkerProcesses(tmp_path / "logs", store=store) as workers:
        worker = workers.start_worker(app, args=["--no-eager"])
        await workers.wait_serving(timeout=60)
        workers.stop()
        assert worker.returncode == 0, workers.logs()  # SIGTERM honoured, not killed
        workers.stop()  # idempotent
    assert not workers.alive()


async def test_a_worker_that_cannot_start_fails_wait_serving_with_its_log(tmp_path):
    workers = WorkerProcesses(tmp_path, store=f"sqlite:///{tmp_path / 'events.db'}")
    with workers:
        workers.start_worker(tmp_path / "missing_app.py")
        with pytest.raises(RuntimeError, match="no such file"):
            await workers.wait_serving(timeout=60)


def test_an_in_memory_store_is_refused_because_no_other_process_sees_it(tmp_path):
    with pytest.raises(ValueError, match="in-memory"):
        WorkerProcesses(tmp_path).start_worker("app.py", store="memory://x")
    assert os.listdir(tmp_path) == []  # nothing was started
