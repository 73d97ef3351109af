"""Guarantee: a process SIGKILLed in the middle of a snapshot write loses nothing.

The process (``apps/snapshot_stall.py``) requests every run, snapshots every 5 records and
stalls for good between a snapshot's chunks and its manifest, where it is SIGKILLed.
Criteria: the next owner loads the previous snapshots (the cut-short one is never used),
folds the tail after them and finishes every run exactly once: the history checker finds
each requested once and completed once, and the idempotent sink holds 3 effects per run.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deerflow import Engine
from deerflow.cli._loader import load_module_workflows
from tests.engine.apps.sink import Sink
from tests.reliability.conftest import APPS
from tests.reliability.history_checker import check_log

RUNS = 30
APP = APPS / "steps_app.py"


def kill_mid_snapshot(store: str, tmp_path: Path, mode: str) -> None:
    """Run the stalling process until it stalls in a snapshot write, then SIGKILL it.

    The marker appears only once every run's start has returned: a run whose start a kill cut
    short was never requested, and waiting for it would wait for nothing.
    """
    marker = tmp_path / "stalled"
    env = {**os.environ, "STEP_SLEEP": "0.05", "PYTHONPATH": str(Path.cwd())}
    app = "tests.reliability.apps.snapshot_stall"
    with (tmp_path / "child.log").open("wb") as out:
        child = subprocess.Popen(
            [sys.executable, "-m", app, store, str(marker), str(RUNS), mode],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 90
        while not marker.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    assert marker.exists(), (tmp_path / "child.log").read_text()


@pytest.mark.timeout(180)
@pytest.mark.parametrize("mode", ["any", "delta"])
async def test_a_kill_between_a_snapshots_chunks_and_its_manifest_loses_nothing(
    tmp_path: Path, sink: Sink, caplog: pytest.LogCaptureFixture, mode: str
) -> None:
    """``delta``: the snapshot cut short is a delta on a chain the next owner loads."""
    store = f"sqlite:///{tmp_path / 'events.db'}"
    kill_mid_snapshot(store, tmp_path, mode)
    _, workflow = load_module_workflows(str(APP))
    assert workflow is not None
    caplog.set_level(logging.INFO, logger="deerflow.orchestrator")
    async with Engine(store, [workflow], snapshot_every=5) as engine:
        run_ids = [f"stall-{n:03d}" for n in range(RUNS)]
        results = [await engine.wait(run_id, timeout=60) for run_id in run_ids]
        history = await check_log(engine.log, engine.topics.history, {workflow.name: workflow})
    pattern = re.compile(r"(\d+) snapshots, (\d+) events, \d+ runs, (\d+) running")
    found = (pattern.search(r.getMessage()) for r in caplog.records)
    loads = [(int(m[1]), int(m[2]), int(m[3])) for m in found if m]
    print(f"loads (snapshots, records folded, runs running): {loads}")
    assert sum(load[0] for load in loads) >= 1, loads  # the previous snapshots were used
    assert sum(load[1] for load in loads) > 0, loads  # and the tail after them
    assert sum(load[2] for load in loads) > 0, loads  # the kill left runs unfinished
    assert not [r for r in caplog.records if "cannot be used" in r.getMessage()]
    assert [r.status for r in results] == ["completed"] * RUNS
    assert [r.output for r in results] == [{"n": n + 2} for n in range(RUNS)]
    history.assert_ok(run_ids, exact=True)
    assert sink.effects() == 3 * RUNS
