"""a. Engine overhead against the storage's own limit.

Kafka: ``M`` concurrent runs of a 10-step no-op chain, run by ``deerflow worker`` subprocesses
(each an orchestrator and a worker) while the driver only starts runs and awaits them
(``Engine(..., orchestrate=False, work=False)``); completed steps/s against an aiokafka
consume→produce relay (:mod:`bench.relay`) moving ``M`` chains of 10 hops with the same number
of processes, partitions, batching, ``acks=all`` and ``linger_ms``. Swept over partitions
{1, 4} x worker processes {1, 2}.

SQLite: the same chains on an in-process engine against raw SQLite inserts with the same
durability (WAL, ``synchronous=FULL``): ``M`` rows per transaction (one per chain), 10
transactions, which is the group commit an engine step gets at best.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import time
from pathlib import Path

from bench.context import BenchContext
from bench.harness import Comparison, Goal, Metric, Metrics
from bench.processes import ProcessPool, child_env, start_workers
from bench.relay import RelayDriver, create_topics
from bench.workloads import CHAIN_STEPS, make_chain
from deerflow import Engine

SCENARIO = "a. engine overhead"
GOAL = Goal(">=", 0.30, stretch=0.5)
RESULT_TIMEOUT = 180.0


async def chain_round(engine: Engine, runs: int) -> Metrics:
    """Start ``runs`` chains at once and await them all; completed steps per second."""
    wf = engine.registry.get("bench_chain")
    assert wf is not None
    started = time.perf_counter()
    handles = await asyncio.gather(*(engine.start(wf) for _ in range(runs)))
    results = await asyncio.gather(*(h.result(timeout=RESULT_TIMEOUT) for h in handles))
    elapsed = time.perf_counter() - started
    failed = [r for r in results if not r.ok]
    if failed:
        raise RuntimeError(f"{len(failed)} chain runs did not complete: {failed[0].error}")
    return {"rate": runs * CHAIN_STEPS / elapsed, "seconds": elapsed}


def _partitions_of(member: int, members: int, partitions: int) -> str:
    return ",".join(str(p) for p in range(partitions) if p % members == member)


async def _kafka_case(ctx: BenchContext, partitions: int, workers: int) -> None:
    runs = ctx.sizes.chain_runs
    bootstrap = ctx.kafka_bootstrap()
    prefix = ctx.prefix("a")
    topic, done = f"{prefix}.relay", f"{prefix}.relay-done"
    await create_topics(bootstrap, {topic: partitions, done: 1})
    driver = RelayDriver(bootstrap, topic, done)
    engine = Engine(
        ctx.kafka_url(),
        [make_chain()],
        prefix=prefix,
        orchestrate=False,
        work=False,
        partitions=partitions,
    )
    env = child_env(DEERFLOW_PREFIX=prefix)
    with ProcessPool(ctx.workdir / f"logs-{prefix}", env) as pool:
        for member in range(workers):
            pool.spawn(
                "relay",
                [
                    sys.executable,
                    "-m",
                    "bench.relay",
                    bootstrap,
                    topic,
                    done,
                    _partitions_of(member, workers, partitions),
                    str(CHAIN_STEPS),
                ],
            )
        await driver.start()
        try:
            async with engine:  # creates the topics with `partitions` before workers join
                start_workers(pool, ctx.kafka_url(), workers, concurrency=max(16, runs))
                await ctx.compare(
                    Comparison(
                        SCENARIO,
                        f"kafka p={partitions} w={workers}",
                        "aiokafka relay",
                        f"{runs} chains",
                        lambda: _relay_round(driver, runs),
                        lambda: _engine_round(engine, pool, runs),
                        [Metric("rate", "steps/s vs relay msg/s", "/s", GOAL)],
                        note=f"{runs} concurrent runs x {CHAIN_STEPS} no-op steps; relay moves "
                        f"{runs} messages x {CHAIN_STEPS} hops with the same processes and "
                        "partitions",
                    ),
                    on_broker=True,
                )
        finally:
            await driver.stop()


async def _relay_round(driver: RelayDriver, runs: int) -> Metrics:
    seconds = await driver.round(runs)
    return {"rate": runs * CHAIN_STEPS / seconds, "seconds": seconds}


async def _engine_round(engine: Engine, pool: ProcessPool, runs: int) -> Metrics:
    if not pool.alive():
        raise RuntimeError(f"a worker process died:\n{pool.logs()}")
    return await chain_round(engine, runs)


def _raw_inserts(path: Path, table: str, rows_per_txn: int, txns: int) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(f"CREATE TABLE IF NOT EXISTS {table} (k TEXT, step INTEGER, v BLOB)")
        payload = b"x" * 200  # about an engine event's size
        started = time.perf_counter()
        for step in range(txns):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                f"INSERT INTO {table} VALUES (?, ?, ?)",
                [(f"chain-{i}", step, payload) for i in range(rows_per_txn)],
            )
            conn.execute("COMMIT")
        return time.perf_counter() - started
    finally:
        conn.close()


async def _sqlite_case(ctx: BenchContext, partitions: int) -> None:
    runs = ctx.sizes.chain_runs
    prefix = ctx.prefix("a")
    table = f"raw_{prefix}"

    async def baseline() -> Metrics:
        seconds = await asyncio.to_thread(_raw_inserts, ctx.sqlite_path, table, runs, CHAIN_STEPS)
        return {"rate": runs * CHAIN_STEPS / seconds, "seconds": seconds}

    async with Engine(
        ctx.sqlite_url,
        [make_chain()],
        prefix=prefix,
        partitions=partitions,
        concurrency=max(16, runs),
    ) as engine:
        await ctx.compare(
            Comparison(
                SCENARIO,
                f"sqlite p={partitions}",
                "raw SQLite inserts",
                f"{runs} chains",
                baseline,
                lambda: chain_round(engine, runs),
                [Metric("rate", "steps/s vs raw rows/s", "/s", GOAL)],
                note=f"in-process engine; baseline: {runs} rows per transaction, WAL + "
                "synchronous=FULL, same file",
            )
        )


async def run(ctx: BenchContext) -> None:
    """The Kafka sweep, then SQLite."""
    for partitions, workers in ctx.sizes.overhead_sweep:
        await _kafka_case(ctx, partitions, workers)
    for partitions in ctx.sizes.sqlite_partitions:
        await _sqlite_case(ctx, partitions)
