"""examples/pipeline_backpressure.py runs, and does what its docstring says."""

from __future__ import annotations

import re

from tests.example_runs import start_example

SUMMARY = re.compile(
    r"^(\w+): strategy=(\w+) offered=(\d+) completed=(\d+) dropped=(\d+) "
    r"peak_in_flight=(\d+) \(bound 1000\).*rows in table: (\d+)$",
    re.M,
)


def test_the_example_loads_everything_under_block_and_lets_go_under_sample(tmp_path):
    runs = {
        mode: start_example("pipeline_backpressure.py", mode, cwd=tmp_path)
        for mode in ("block", "sample")
    }
    summaries = {}
    for mode, started in runs.items():
        out = started.finish().stdout
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
