"""Run in a subprocess by test_memory.py: stream 10x the buffer of 16 KiB items into a slow
sink and print, as JSON, how much the process's peak RSS grew and the peak items in flight.

    python -m tests.pipeline.memory_probe block|drop|unbounded
"""

from __future__ import annotations

import json
import sys
import time
import tracemalloc
from typing import Any

from deerflow import Backpressure, Pipeline, Workflow, stage
from tests.rss import peak_rss_mib

ITEM_BYTES = 16 * 1024
BUFFER = 500
ITEMS = 10 * BUFFER


class Probe(Pipeline):
    @stage(parallelism=4)
    async def parse(self, item):
        return item

    @stage(parallelism=2)
    def weigh(self, item):
        return item


def run(mode: str, items: int) -> dict[str, Any]:
    produced, consumed, peak_between = 0, 0, 0

    def source():
        nonlocal produced, peak_between
        for n in range(items):
            peak_between = max(peak_between, produced - consumed)
            produced += 1
            yield (b"%08d" % n) * (ITEM_BYTES // 8)  # written, so its pages are resident

    def slow_sink(item):
        nonlocal consumed
        time.sleep(0.0002)
        consumed += 1

    if mode == "unbounded":
        backpressure = Backpressure(max_buffer_size=None)
    else:
        backpressure = Backpressure(max_buffer_size=BUFFER, strategy=mode)  # type: ignore[arg-type]
    wf = Workflow(name=f"memory_{mode}")
    wf.pipeline(backpressure=backpressure, sink=slow_sink)(Probe)
    result = wf.run(input=source())
    assert result.status == "completed", result.error
    return {
        "peak_in_flight": result.output["items"]["peak_in_flight"],
        "peak_between": peak_between,
        "completed": result.output["items"]["completed"],
        "dropped": result.output["items"]["dropped"],
    }


def main() -> None:
    mode = sys.argv[1]
    tracemalloc.start()
    run(mode, BUFFER // 5)  # warm up: threads, pools and imports are not what we measure
    baseline = peak_rss_mib()
    traced_before = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    outcome = run(mode, ITEMS)
    outcome["rss_growth_mib"] = round(peak_rss_mib() - baseline, 1)
    # The heap's own peak: exact, where RSS can hide growth in pages the allocator kept.
    outcome["heap_peak_growth_mib"] = round(
        (tracemalloc.get_traced_memory()[1] - traced_before) / 2**20, 1
    )
    outcome["items_mib"] = round(ITEMS * ITEM_BYTES / 2**20, 1)
    print(json.dumps(outcome))


if __name__ == "__main__":
    main()
