"""examples/pipeline_backpressure.py runs, and does what its docstring says."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "pipeline_backpressure.py"
SUMMARY = re.compile(
    r"^(\w+): strategy=(\w+) offered=(\d+) completed=(\d+) dropped=(\d+) "
    r"peak_in_flight=(\d+) \(bound 1000\).*rows in table: (\d+)$",
    re.M,
)


def test_the_example_loads_everything_under_block_and_lets_go_under_sample():
    runs = {
        mode: subprocess.Popen(
            [sys.executable, str(EXAMPLE), mode],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for mode in ("block", "sample")
    }
    summaries = {}
    for mode, process in runs.items():
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        match = SUMMARY.search(out)
        assert match, out
        summaries[mode] = match.groups()

    status, _, offered, completed, dropped, peak, rows = summaries["block"]
    assert (status, offered, completed, dropped, rows) == (
        "completed",
        "20000",
        "20000",
        "0",
        "20000",
    )
    assert int(peak) <= 1000
    status, _, offered, completed, dropped, peak, rows = summaries["sample"]
    assert status == "completed" and int(dropped) > 0
    assert int(completed) + int(dropped) == 20000 == int(offered)
    assert int(rows) == int(completed) and int(peak) <= 1000
