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

The limit rows: ``M`` of 500 and 5,000 chains in flight at once, on Kafka against the relay
tuned for throughput (``--tuned``: every chain in flight, batched as a tuned client would) and
on SQLite against ``M`` rows per transaction; and a stream of 10,000 one-step runs all started
at once, against raw inserts of one row per run, 500 per transaction. Every row also reports
the records deerflow wrote per step (history events and task messages, counted in the log),
against the baseline's one row or message.

Flow control: the same stream of one-step runs with ``Concurrency(limit=10,
key="params.k")`` over 100 keys (every run queued at its gate, admitted, released), against
the stream without flow control on the same engine: runs/s with ÷ without (goal >= 0.8).
And a batch: 100 runs of one key started at once with ``Batch(max_size=100)``, the latency
from the first start to the end of the one run that takes them all (p50 over iterations).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from bench.context import BenchContext
from bench.harness import Comparison, Goal, Measure, Metric, Metrics
from bench.processes import ProcessPool, child_env, start_workers
from bench.records import kafka_records, sqlite_records
from bench.relay import RelayDriver, create_topics, member_argv
from bench.workloads import (
    CHAIN_STEPS,
    make_batched,
    make_chain,
    make_keyed_short,
    make_short,
)
from deerflow import Engine, RunHandle, RunResult

SCENARIO = "a. engine overhead"
GOAL = Goal(">=", 0.30, stretch=0.5)
FLOW_GOAL = Goal(">=", 0.8)
RESULT_TIMEOUT = 600.0
SHORT_BATCH = 500  # rows per transaction of the short-run stream's baseline
RATE = Metric("rate", "steps/s vs baseline rows or msg/s", "/s", GOAL)
RECORDS = Metric("records", "records written per step (baseline: 1)", "")
STEP_P99 = Metric("step_ms_p99", "p99 over chains of a chain's time ÷ its steps", "ms")


def step_p99_ms(ended: list[float]) -> float:
    """p99 over chains of (seconds from the round's start to the chain's end) ÷ its steps."""
    ordered = sorted(ended)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] / CHAIN_STEPS * 1000


async def chain_round(engine: Engine, runs: int) -> Metrics:
    """Start ``runs`` chains at once and await them all; completed steps per second."""
    wf = engine.registry.get("bench_chain")
    assert wf is not None
    started = time.perf_counter()
    ended: list[float] = []

    async def result(handle: RunHandle) -> RunResult:
        outcome = await handle.result(timeout=RESULT_TIMEOUT)
        ended.append(time.perf_counter() - started)
        return outcome

    handles = await asyncio.gather(*(engine.start(wf) for _ in range(runs)))
    results = await asyncio.gather(*(result(h) for h in handles))
    elapsed = time.perf_counter() - started
    failed = [r for r in results if not r.ok]
    if failed:
        raise RuntimeError(f"{len(failed)} chain runs did not complete: {failed[0].error}")
    return {
        "rate": runs * CHAIN_STEPS / elapsed,
        "seconds": elapsed,
        "step_ms_p99": step_p99_ms(ended),
    }


async def _kafka_case(
    ctx: BenchContext, partitions: int, workers: int, runs: int, *, tuned: bool = False
) -> None:
    bootstrap = ctx.kafka_bootstrap()
    prefix = ctx.prefix("a")
    # Not under ``prefix.``: the engine's records are counted by that prefix.
    topic, done = f"{prefix}-relay", f"{prefix}-relay-done"
    await create_topics(bootstrap, {topic: partitions, done: 1})
    driver = RelayDriver(bootstrap, topic, done, tuned=tuned)
    engine = Engine(
        ctx.kafka_url(),
        [make_chain()],
        prefix=prefix,
        orchestrate=False,
        work=False,
        partitions=partitions,
    )
    env = child_env(DEERFLOW_PREFIX=prefix)
    relay = "aiokafka relay, tuned for throughput" if tuned else "aiokafka relay"
    name = f"kafka p={partitions} w={workers}" + (f", {runs} chains in flight" if tuned else "")
    with ProcessPool(ctx.workdir / f"logs-{prefix}", env) as pool:
        for member in range(workers):
            argv = member_argv(
                bootstrap, topic, done, member, workers, partitions, CHAIN_STEPS, tuned=tuned
            )
            pool.spawn("relay", argv)
        await driver.start()
        try:
            async with engine:  # creates the topics with `partitions` before workers join
                start_workers(pool, ctx.kafka_url(), workers, concurrency=max(16, runs))

                async def engine_round() -> Metrics:
                    before = await kafka_records(bootstrap, prefix)
                    metrics = await _engine_round(engine, pool, runs)
                    written = await kafka_records(bootstrap, prefix) - before
                    return {**metrics, "records": written / (runs * CHAIN_STEPS)}

                await ctx.compare(
                    Comparison(
                        SCENARIO,
                        name,
                        relay,
                        f"{runs} chains",
                        lambda: _relay_round(driver, runs),
                        engine_round,
                        [RATE, RECORDS, STEP_P99] if tuned else [RATE, RECORDS],
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
    return {
        "rate": runs * CHAIN_STEPS / seconds,
        "seconds": seconds,
        "records": 1.0,
        "step_ms_p99": step_p99_ms(driver.ended),
    }


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


async def _raw_rate(ctx: BenchContext, table: str, rows_per_txn: int, txns: int) -> Metrics:
    seconds = await asyncio.to_thread(_raw_inserts, ctx.sqlite_path, table, rows_per_txn, txns)
    return {"rate": rows_per_txn * txns / seconds, "seconds": seconds, "records": 1.0}


async def _counted(ctx: BenchContext, prefix: str, steps: int, round_: Measure) -> Metrics:
    """``round_``'s metrics and the records its engine wrote per step (counted in the file)."""
    before = await asyncio.to_thread(sqlite_records, ctx.sqlite_path, prefix)
    metrics = await round_()
    written = await asyncio.to_thread(sqlite_records, ctx.sqlite_path, prefix) - before
    return {**metrics, "records": written / steps}


async def _sqlite_case(ctx: BenchContext, partitions: int, runs: int, *, limit: bool) -> None:
    prefix = ctx.prefix("a")
    table = f"raw_{prefix}"
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
                f"sqlite p={partitions}" + (f", {runs} chains in flight" if limit else ""),
                "raw SQLite inserts",
                f"{runs} chains",
                lambda: _raw_rate(ctx, table, runs, CHAIN_STEPS),
                lambda: _counted(
                    ctx, prefix, runs * CHAIN_STEPS, lambda: chain_round(engine, runs)
                ),
                [RATE, RECORDS],
                note=f"in-process engine; baseline: {runs} rows per transaction, WAL + "
                "synchronous=FULL, same file",
            )
        )


async def short_stream(engine: Engine, runs: int) -> Metrics:
    """Start ``runs`` one-step runs at once, await them all; completed runs per second."""
    wf = engine.registry.get("bench_short")
    assert wf is not None
    started = time.perf_counter()
    handles = await asyncio.gather(*(engine.start(wf) for _ in range(runs)))
    results = await asyncio.gather(*(h.result(timeout=RESULT_TIMEOUT) for h in handles))
    elapsed = time.perf_counter() - started
    failed = [r for r in results if not r.ok]
    if failed:
        raise RuntimeError(f"{len(failed)} short runs did not complete: {failed[0].error}")
    return {"rate": runs / elapsed, "seconds": elapsed}


async def _short_runs_case(ctx: BenchContext, runs: int) -> None:
    prefix = ctx.prefix("a")
    table = f"raw_{prefix}"
    batch = min(runs, SHORT_BATCH)
    async with Engine(
        ctx.sqlite_url, [make_short()], prefix=prefix, concurrency=max(16, min(runs, 1000))
    ) as engine:
        await ctx.compare(
            Comparison(
                SCENARIO,
                f"sqlite, stream of {runs:,} one-step runs",
                "raw SQLite inserts",
                f"{runs:,} runs",
                lambda: _raw_rate(ctx, table, batch, runs // batch),
                lambda: _counted(ctx, prefix, runs, lambda: short_stream(engine, runs)),
                [
                    Metric("rate", "runs/s vs raw rows/s", "/s", GOAL),
                    Metric("records", "records written per run (baseline: 1)", ""),
                ],
                note=f"in-process engine, every run started at once; baseline: one row per "
                f"run, {batch} rows per transaction, WAL + synchronous=FULL, same file",
            )
        )


FLOW_KEYS = 100  # distinct concurrency-key values of the flow-control row


async def keyed_stream(engine: Engine, runs: int) -> Metrics:
    """Start ``runs`` one-step runs with a concurrency key at once; completed runs per second."""
    wf = engine.registry.get("bench_keyed")
    assert wf is not None
    started = time.perf_counter()
    handles = await asyncio.gather(
        *(engine.start(wf, params={"k": f"k{i % FLOW_KEYS}"}) for i in range(runs))
    )
    results = await asyncio.gather(*(h.result(timeout=RESULT_TIMEOUT) for h in handles))
    elapsed = time.perf_counter() - started
    failed = [r for r in results if not r.ok]
    if failed:
        raise RuntimeError(f"{len(failed)} keyed runs did not complete: {failed[0].error}")
    return {"rate": runs / elapsed, "seconds": elapsed}


async def _flow_case(ctx: BenchContext, runs: int) -> None:
    prefix = ctx.prefix("a")
    async with Engine(
        ctx.sqlite_url,
        [make_short(), make_keyed_short()],
        prefix=prefix,
        concurrency=max(16, min(runs, 1000)),
    ) as engine:
        await ctx.compare(
            Comparison(
                SCENARIO,
                f"sqlite, {runs:,} one-step runs with a concurrency key",
                "the same runs without flow control",
                f"{runs:,} runs, {FLOW_KEYS} keys, limit 10",
                lambda: short_stream(engine, runs),
                lambda: keyed_stream(engine, runs),
                [Metric("rate", "runs/s with a concurrency key vs without", "/s", FLOW_GOAL)],
                note="in-process engine, every run started at once; each keyed run is queued, "
                "admitted by its gate and released (three more history events, two records "
                "of the flow topic)",
            )
        )


BATCH = 100  # runs of one key that one batched run takes


async def batch_round(engine: Engine, round_: list[int]) -> Metrics:
    """Start ``BATCH`` runs of a fresh key at once; ms until the run that takes them ended."""
    wf = engine.registry.get("bench_batch")
    assert wf is not None
    round_[0] += 1
    key = f"k{round_[0]}"
    started = time.perf_counter()
    handles = await asyncio.gather(*(engine.start(wf, params={"k": key}) for _ in range(BATCH)))
    results = await asyncio.gather(*(h.result(timeout=RESULT_TIMEOUT) for h in handles))
    elapsed = time.perf_counter() - started
    taken = [r for r in results if r.status == "completed"]
    if len(taken) != 1 or taken[0].output != BATCH:
        raise RuntimeError(f"{len(taken)} runs took the batch: {[r.output for r in taken]}")
    return {"latency_ms": elapsed * 1000}


async def _batch_case(ctx: BenchContext) -> None:
    rounds = [0]
    async with Engine(ctx.sqlite_url, [make_batched()], prefix=ctx.prefix("a")) as engine:
        await ctx.compare(
            Comparison(
                SCENARIO,
                f"sqlite, a batch of {BATCH} runs -> one run",
                "",
                f"{BATCH} runs of one key, Batch(max_size={BATCH})",
                None,
                lambda: batch_round(engine, rounds),
                [Metric("latency_ms", "first start -> the batch's run ended", "ms")],
                note="in-process engine; the runs are started at once and the batch fills "
                "(its 60 s timeout never passes)",
            )
        )


async def run(ctx: BenchContext) -> None:
    """The Kafka sweep and its limit rows, then SQLite's."""
    sizes = ctx.sizes
    for partitions, workers in sizes.overhead_sweep:
        await _kafka_case(ctx, partitions, workers, sizes.chain_runs)
    partitions, workers = sizes.limit_kafka
    for runs in sizes.limit_chains:
        await _kafka_case(ctx, partitions, workers, runs, tuned=True)
    for partitions in sizes.sqlite_partitions:
        await _sqlite_case(ctx, partitions, sizes.chain_runs, limit=False)
    for runs in sizes.limit_chains:
        await _sqlite_case(ctx, max(sizes.sqlite_partitions), runs, limit=True)
    await _short_runs_case(ctx, sizes.short_runs)
    await _flow_case(ctx, sizes.short_runs)
    await _batch_case(ctx)
