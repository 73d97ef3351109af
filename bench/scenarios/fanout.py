"""c. Fan-out scaling: N ∈ {10, 100, 1k, 10k} tasks in one run, and memory per pending task.

Time: one run of ``split → work (parallel_tasks over N items) → merge`` on an in-process
engine (SQLite), from ``start`` to its result. Pairs alternate the smaller and the larger N,
so each row's ratio is T(larger)/T(smaller); linear scaling is 10x, the goal for 1k → 10k is
≤ 12x.

Memory: a subprocess (``python -m bench.scenarios.fanout --memory STORE N``) starts an
embedded engine, measures its RSS, starts a run whose N children stay pending
(``max_parallel=1`` and a first child that never returns), waits until both the orchestrator
and the run index hold the expanded node, and measures again: (after - before) / N.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import os
import sys
import time

from bench.context import BenchContext
from bench.harness import Comparison, Goal, Metric, Metrics
from bench.processes import child_env
from bench.workloads import make_fanout
from deerflow import Engine

SCENARIO = "c. fan-out scaling"
SCALING_GOAL = Goal("<=", 12.0)
MEMORY_GOAL = Goal("<=", 5120.0)


async def fanout_time(engine: Engine, n: int) -> Metrics:
    """Seconds for one run fanning out to ``n`` no-op children."""
    started = time.perf_counter()
    handle = await engine.start("bench_fanout", params={"n": n})
    result = await handle.result(timeout=900)
    elapsed = time.perf_counter() - started
    if not result.ok or result.output is None:
        raise RuntimeError(f"fan-out of {n} ended {result.status}: {result.error}")
    return {"seconds": elapsed, "tasks_per_s": n / elapsed}


async def _scaling(ctx: BenchContext) -> None:
    sizes = ctx.sizes.fanout_sizes
    async with Engine(
        ctx.sqlite_url, [make_fanout()], prefix=ctx.prefix("c"), concurrency=64
    ) as engine:
        for small, large in itertools.pairwise(sizes):
            goal = SCALING_GOAL if (small, large) == (1000, 10_000) else None
            await ctx.compare(
                Comparison(
                    SCENARIO,
                    f"T({large:,})/T({small:,}) sqlite",
                    f"N={small:,}",
                    f"N={large:,}",
                    lambda n=small: fanout_time(engine, n),  # type: ignore[misc]
                    lambda n=large: fanout_time(engine, n),  # type: ignore[misc]
                    [Metric("seconds", "run time", "s", goal)],
                    note="in-process engine, worker concurrency 64, async no-op children; "
                    "linear scaling is 10x",
                )
            )


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def _hold_pending(store: str, n: int) -> None:
    wf = make_fanout(name="bench_hold", max_parallel=1, hold=True)
    async with Engine(store, [wf], concurrency=4) as engine:
        await engine.index.start()
        gc.collect()
        before = _rss()
        handle = await engine.start(wf, params={"n": n})
        assert engine.orchestrator is not None
        deadline = time.monotonic() + 300
        while not all(
            _expanded(runs.get(handle.run_id), n)
            for runs in (engine.orchestrator.runs, engine.index.runs)
        ):
            if time.monotonic() > deadline:
                raise TimeoutError("children were not expanded in time")
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # let the first dispatch settle
        gc.collect()
        after = _rss()
        # Exit here: stopping would wait for the held child's drain timeout.
        print(
            json.dumps({"before": before, "after": after, "per_task": (after - before) / n}),
            flush=True,
        )
        os._exit(0)


def _expanded(state: object, n: int) -> bool:
    task = getattr(state, "tasks", {}).get("work")
    return task is not None and task.expansion is not None and len(task.expansion.children) == n


async def _measure_memory(ctx: BenchContext, n: int) -> Metrics:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.scenarios.fanout",
        "--memory",
        ctx.sqlite_url,
        str(n),
        env=child_env(DEERFLOW_PREFIX=ctx.prefix("cm")),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"memory subprocess failed: {err.decode()[-2000:]}")
    data = json.loads(out.decode().strip().splitlines()[-1])
    return {"per_task": data["per_task"], "delta_mb": (data["after"] - data["before"]) / 2**20}


async def run(ctx: BenchContext) -> None:
    """Scaling rows, then bytes per pending task."""
    await _scaling(ctx)
    n = ctx.sizes.fanout_pending
    await ctx.compare(
        Comparison(
            SCENARIO,
            f"memory per pending task (N={n:,})",
            "",
            "embedded engine",
            None,
            lambda: _measure_memory(ctx, n),
            [
                Metric("per_task", "RSS per pending task", "B", MEMORY_GOAL),
                Metric("delta_mb", "RSS growth", "MiB"),
            ],
            note="one process holding the run twice (orchestrator state + run index) plus the "
            "expansion in the history it read; max_parallel=1 keeps the children pending",
        )
    )


def main() -> None:
    """``python -m bench.scenarios.fanout --memory STORE N``: print the memory JSON."""
    _, flag, store, n = sys.argv
    assert flag == "--memory"
    asyncio.run(_hold_pending(store, int(n)))


if __name__ == "__main__":
    main()
