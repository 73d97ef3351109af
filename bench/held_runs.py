"""What a waiting run costs an engine with and without eviction of idle runs.

``python -m bench.held_runs STORE RUNS LIMIT`` (``STORE``: ``sqlite`` or ``kafka``, a broker
started as ``python -m bench`` starts one unless ``DEERFLOW_KAFKA_BOOTSTRAP`` names one)
starts ``RUNS`` runs of scenario g's workflow (one ``wait_for_event`` node, then a task) on
an engine with ``max_held_runs=LIMIT`` and leaves them waiting, measured as scenario g
measures them (RSS growth and Python objects still held per waiting run, once every run
waits in the index and the orchestrator has folded every record). Prints one JSON line, with
the run states held and evicted. Run each limit in a fresh process: a second engine in the
same process reuses the memory the first freed, and its RSS growth means nothing.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time

from bench.context import BenchContext
from bench.harness import Settings
from bench.scenarios.eventwaits import _start_waiting, waits_workflow
from deerflow import Engine


async def measure(store: str, runs: int, limit: int) -> dict[str, object]:
    """Start ``runs`` waiting runs on ``store`` with ``max_held_runs=limit``; what they cost."""
    ctx = BenchContext(quick=False, settings=Settings(pairs=1, warmup=0))
    try:
        with tempfile.TemporaryDirectory(prefix="deerflow-held-") as scratch:
            url = ctx.kafka_url() if store == "kafka" else f"sqlite:///{scratch}/held.db"
            wf = waits_workflow()
            async with Engine(
                url, [wf], prefix=f"held{limit}", max_held_runs=limit, concurrency=64
            ) as engine:
                began = time.monotonic()
                rss, objects = await _start_waiting(engine, wf, runs)
                orchestrator = engine.orchestrator
                assert orchestrator is not None
                return {
                    "store": store,
                    "runs": runs,
                    "max_held_runs": limit,
                    "held": orchestrator.held_runs,
                    "evicted": orchestrator.evicted_runs,
                    "rss_bytes_per_run": round(rss),
                    "objects_bytes_per_run": round(objects),
                    "seconds": round(time.monotonic() - began, 1),
                }
    finally:
        ctx.close()


def main(argv: list[str]) -> None:
    """``STORE RUNS LIMIT`` from the command line; one JSON line on stdout."""
    if len(argv) != 3 or argv[0] not in ("sqlite", "kafka"):
        raise SystemExit("usage: python -m bench.held_runs sqlite|kafka RUNS MAX_HELD_RUNS")
    print(json.dumps(asyncio.run(measure(argv[0], int(argv[1]), int(argv[2])))))


if __name__ == "__main__":
    main(sys.argv[1:])
