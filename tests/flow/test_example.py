"""examples/flow_control.py runs as a newcomer would run it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_flow_control_example_limits_syncs_and_drops_emails(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "flow_control.py")],
        cwd=tmp_path,
        text=True,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    # two at a time per customer: neither all four at once nor one by one
    assert lines[0] == "8 syncs, at most at once: {'acme': 2, 'globex': 2}"
    assert lines[1] == "['completed', 'completed', 'completed', 'dropped', 'dropped']"
