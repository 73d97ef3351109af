"""Memory is bounded by max_buffer_size whatever the producer does, measured in subprocesses.

Each probe streams 10x the buffer (5,000 items of 16 KiB, 78 MiB in all) as fast as its
generator goes into a slow sink, and reports how much its peak RSS grew. The unbounded run is
the negative control: the same measurement sees the backlog when nothing bounds it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BOUND_ITEMS_MIB = 500 * 16 / 1024  # what 500 items in flight hold: ~7.8 MiB


def probes(*modes: str) -> dict[str, dict[str, Any]]:
    running = {
        mode: subprocess.Popen(
            [sys.executable, "-m", "tests.pipeline.memory_probe", mode],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for mode in modes
    }
    outcomes = {}
    for mode, process in running.items():
        out, err = process.communicate(timeout=90)
        assert process.returncode == 0, err.decode()
        outcomes[mode] = json.loads(out.decode().strip().splitlines()[-1])
    return outcomes


def test_rss_stays_flat_under_block_and_drop_and_grows_without_a_bound():
    outcome = probes("block", "drop", "unbounded")
    block, drop, unbounded = outcome["block"], outcome["drop"], outcome["unbounded"]

    assert block["completed"] == 5000 and block["dropped"] == 0
    assert block["peak_in_flight"] <= 500 and block["peak_between"] <= 500
    assert drop["peak_in_flight"] <= 500 and drop["completed"] + drop["dropped"] == 5000
    # Bounded: growth is about what 500 items hold, not what 5,000 do.
    assert block["rss_growth_mib"] < BOUND_ITEMS_MIB + 12, outcome
    assert drop["rss_growth_mib"] < BOUND_ITEMS_MIB + 12, outcome
    # The control holds thousands of items (tens of MiB) at once, and the measurement sees it.
    assert unbounded["peak_in_flight"] > 2500, outcome
    assert unbounded["heap_peak_growth_mib"] > 30, outcome
    assert unbounded["heap_peak_growth_mib"] > 3 * block["heap_peak_growth_mib"], outcome
    assert block["heap_peak_growth_mib"] < BOUND_ITEMS_MIB + 12, outcome
