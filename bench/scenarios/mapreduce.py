"""d. MapReduce: word count against ``multiprocessing.Pool(2)``; I/O-bound maps against gather.

CPU-bound: a generated corpus of text files, one map task per file (``@workflow.map_reduce``
with the :class:`bench.workloads.WordCount` class), run by two ``deerflow worker``
subprocesses on Kafka (on SQLite one process holds the task queue's lease, so it would use one
core); the driver only starts the run. Baseline: ``Pool(2).map(count_words, files)`` and the
same reduce, the pool made once like the long-lived workers. Both read the same files.

I/O-bound: ``n`` maps each awaiting ``asyncio.sleep(delay)`` on an in-process engine (SQLite)
with worker concurrency ``C``, against ``asyncio.gather`` of the same sleeps under a
``Semaphore(C)``.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench.context import BenchContext
from bench.harness import Comparison, Goal, Metric, Metrics
from bench.processes import ProcessPool, child_env, start_workers
from bench.workloads import add_counts, count_words, make_sleepmap, make_wordcount, write_corpus
from deerflow import Engine

SCENARIO = "d. mapreduce"
CPU_GOAL = Goal(">=", 0.7)
IO_GOAL = Goal(">=", 0.9)


async def _timed_run(engine: Engine, workflow: str, params: dict[str, Any], items: int) -> Metrics:
    started = time.perf_counter()
    handle = await engine.start(workflow, params=params)
    result = await handle.result(timeout=600)
    elapsed = time.perf_counter() - started
    if not result.ok:
        raise RuntimeError(f"{workflow} ended {result.status}: {result.error}")
    return {"rate": items / elapsed, "seconds": elapsed}


def _pool_measure(pool: Any, files: list[str]) -> Callable[[], Awaitable[Metrics]]:
    def count() -> float:
        started = time.perf_counter()
        add_counts(pool.map(count_words, files))
        return time.perf_counter() - started

    async def baseline() -> Metrics:
        seconds = await asyncio.to_thread(count)
        return {"rate": len(files) / seconds, "seconds": seconds}

    return baseline


async def _cpu(ctx: BenchContext) -> None:
    sizes = ctx.sizes
    files = await asyncio.to_thread(
        write_corpus, ctx.workdir / "corpus", sizes.mr_chunks, sizes.mr_words
    )
    prefix = ctx.prefix("d")
    engine = Engine(
        ctx.kafka_url(),
        [make_wordcount()],
        prefix=prefix,
        orchestrate=False,
        work=False,
        partitions=4,
    )
    with (
        ProcessPool(ctx.workdir / f"logs-{prefix}", child_env(DEERFLOW_PREFIX=prefix)) as procs,
        multiprocessing.get_context("fork").Pool(2) as pool,
    ):
        async with engine:
            start_workers(procs, ctx.kafka_url(), 2, concurrency=1)
            await ctx.compare(
                Comparison(
                    SCENARIO,
                    f"word count, {len(files)} chunks (CPU)",
                    "multiprocessing.Pool(2)",
                    "2 worker processes (kafka)",
                    _pool_measure(pool, files),
                    lambda: _timed_run(engine, "bench_wordcount", {"files": files}, len(files)),
                    [Metric("rate", "chunks/s", "/s", CPU_GOAL)],
                    note=f"{sizes.mr_words:,} words per chunk; map results (about 2,000 counts "
                    "each) travel through the history; map tasks go round-robin over 4 "
                    "task partitions, 2 per worker",
                )
            )


async def _io(ctx: BenchContext) -> None:
    n, concurrency, delay = ctx.sizes.io_maps, ctx.sizes.io_concurrency, ctx.sizes.io_delay

    async def baseline() -> Metrics:
        gate = asyncio.Semaphore(concurrency)

        async def one(i: int) -> int:
            async with gate:
                await asyncio.sleep(delay)
                return i

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        seconds = time.perf_counter() - started
        return {"rate": n / seconds, "seconds": seconds}

    async with Engine(
        ctx.sqlite_url, [make_sleepmap()], prefix=ctx.prefix("d"), concurrency=concurrency
    ) as engine:
        await ctx.compare(
            Comparison(
                SCENARIO,
                f"{n} I/O maps x {delay * 1000:g} ms, concurrency {concurrency}",
                "asyncio.gather",
                "in-process engine (sqlite)",
                baseline,
                lambda: _timed_run(engine, "bench_sleepmap", {"n": n, "delay": delay}, n),
                [Metric("rate", "maps/s", "/s", IO_GOAL)],
                note="the ideal is n / concurrency rounds of the delay; the engine adds partition, "
                "dispatch and reduce steps",
            )
        )


async def run(ctx: BenchContext) -> None:
    """CPU-bound, then I/O-bound."""
    await _cpu(ctx)
    await _io(ctx)
