"""One run fanning out 10,000 tasks completes, in bounded memory, with no per-run cap.

Measured on this project's 2-core machine (``python tests/patterns/apps/fanout_scale.py N
STORE``, one process: orchestrator, worker and run index; time is wall-clock for the run):

===========  =======  ===============  ========
store        tasks    time             peak RSS
===========  =======  ===============  ========
sqlite       1,000    0.75 s (6.5 s)   48 MiB
sqlite       10,000   6.1 s (65 s)     114 MiB
memory       10,000   1.5 s            163 MiB (the log itself is in memory)
===========  =======  ===============  ========

The times in brackets were taken while other test suites shared the disk: SQLite then waits
on its ``synchronous=FULL`` commits (7% CPU), not on the decider. Memory grows with what the
run must remember (each child's state and output, ~7 KiB per child here), not with queues.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).parent / "apps" / "fanout_scale.py"


def measure(n: int, store: str, cwd: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(SCRIPT.parents[3])}  # finds tests.rss
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(n), store],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_ten_thousand_children_of_one_run_complete_in_bounded_memory(tmp_path):
    result = measure(10_000, "memory://scale", tmp_path)
    assert result["status"] == "completed"
    assert result["output"] == {"count": 10_000, "total": 2 * sum(range(10_000))}
    assert result["peak_rss_mib"] < 400, result


@pytest.mark.timeout(900)
@pytest.mark.parametrize("n", [1_000, pytest.param(10_000, marks=pytest.mark.slow)])
def test_fan_out_on_sqlite(tmp_path, n):
    result = measure(n, f"sqlite:///{tmp_path / 'scale.db'}", tmp_path)
    assert result["status"] == "completed" and result["output"]["count"] == n
    assert result["peak_rss_mib"] < 300, result
