"""What a waiting run costs an engine with and without eviction of idle runs.

``python -m bench.held_runs STORE RUNS LIMIT [--no-trim] [--settle=S]`` (``STORE``:
``sqlite`` or ``kafka``, a broker started as ``python -m bench`` starts one unless
``DEERFLOW_KAFKA_BOOTSTRAP`` names one) starts ``RUNS`` runs of scenario g's workflow (one
``wait_for_event`` node, then a task) on an engine with ``max_held_runs=LIMIT`` and leaves them
waiting, measured as scenario g measures them (RSS growth and Python objects still held per
waiting run, once every run waits in the index and the orchestrator has folded every record),
then the RSS growth again once the engine was left alone for ``S`` seconds (default
:data:`SETTLE`: its trimmer returns the starts' free memory; ``--no-trim`` turns it off, to
see what it gives back). Prints one JSON line, with the run states held and evicted. Run each
limit in a fresh process: a second engine in the same process reuses the memory the first
freed, and its RSS growth means nothing.
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

USAGE = "usage: python -m bench.held_runs sqlite|kafka RUNS MAX_HELD_RUNS [--no-trim] [--settle=S]"
SETTLE = (
    15.0  # seconds the engine is left alone before the settled RSS: one trim's interval and more
)


async def measure(
    store: str, runs: int, limit: int, *, trim: bool = True, settle: float = SETTLE
) -> dict[str, object]:
    """Start ``runs`` waiting runs on ``store`` with ``max_held_runs=limit``; what they cost
    (``trim=False``: with the engine's trimmer off), also ``settle`` seconds later."""
    ctx = BenchContext(quick=False, settings=Settings(pairs=1, warmup=0))
    try:
        with tempfile.TemporaryDirectory(prefix="deerflow-held-") as scratch:
            url = ctx.kafka_url() if store == "kafka" else f"sqlite:///{scratch}/held.db"
            wf = waits_workflow()
            async with Engine(
                url, [wf], prefix=f"held{limit}", max_held_runs=limit, concurrency=64
            ) as engine:
                began = time.monotonic()
                orchestrator = engine.orchestrator
                assert orchestrator is not None
                orchestrator.trimmer.enabled = orchestrator.trimmer.enabled and trim
                rss, objects, settled = await _start_waiting(engine, wf, runs, settle=settle)
                return {
                    "store": store,
                    "runs": runs,
                    "max_held_runs": limit,
                    "held": orchestrator.held_runs,
                    "evicted": orchestrator.evicted_runs,
                    "rss_bytes_per_run": round(rss),
                    "settled_rss_bytes_per_run": round(settled),
                    "trims": orchestrator.trimmer.trims,
                    "objects_bytes_per_run": round(objects),
                    "seconds": round(time.monotonic() - began, 1),
                }
    finally:
        ctx.close()


def main(argv: list[str]) -> None:
    """``STORE RUNS LIMIT [--no-trim] [--settle=S]`` from the command line; one JSON line on
    stdout."""
    options = [a for a in argv if a.startswith("--")]
    argv = [a for a in argv if not a.startswith("--")]
    trim = "--no-trim" not in options
    settles = [a.removeprefix("--settle=") for a in options if a.startswith("--settle=")]
    known = len(options) == (not trim) + len(settles) <= 2
    if not known or len(argv) != 3 or argv[0] not in ("sqlite", "kafka"):
        raise SystemExit(USAGE)
    try:
        runs, limit, settle = int(argv[1]), int(argv[2]), float(settles[-1] if settles else SETTLE)
    except ValueError:
        raise SystemExit(USAGE) from None
    result = measure(argv[0], runs, limit, trim=trim, settle=settle)
    print(json.dumps(asyncio.run(result)))


if __name__ == "__main__":
    main(sys.argv[1:])
