"""Scaling with processes: the chain workload on Kafka with 1, 2 and 4 ``deerflow worker``
processes.

``python -m bench.scaling [--workers 1,2,4] [--runs 500] [--partitions 8] [--pairs 3]
[--rounds 2] [--stem NAME] [--out DIR]`` starts, for each worker count in turn (the order
reversed every other pass, so each count sees early and late machine load alike), a fresh
topic prefix with ``--partitions`` partitions, that many ``deerflow worker`` subprocesses and
a driver in this process (``Engine(..., orchestrate=False, work=False)``, as scenario a), runs
a warm-up round, then ``--rounds`` timed rounds of ``--runs`` 10-step chains all in flight at once.

Each line gives steps/s, the CPU each side used over the timed rounds in cores (the workers
together, the driver, the broker when the benchmark started it) and the steps per CPU-second
of the workers and of all three, which is what one more core buys on a machine that has it;
then per count the median over passes and, per pass, steps/s with N workers ÷ with 1. The
load average is printed beside every line: the machine may be shared. A markdown summary goes
to ``bench/results/scaling-<stem>.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.context import BenchContext, kafka_broker
from bench.harness import Settings
from bench.processes import ProcessPool, child_env, cpu_seconds, start_workers
from bench.scenarios.overhead import chain_round
from bench.workloads import CHAIN_STEPS, make_chain
from deerflow import Engine
from deerflow.testing import Service

RESULTS = Path(__file__).resolve().parent / "results"
WARM_UP_RUNS = 500


@dataclass
class Measured:
    """One worker count's timed rounds in one pass."""

    workers: int
    rate: float
    step_p99_ms: float
    worker_cores: float
    driver_cores: float
    broker_cores: float | None
    steps_per_worker_cpu_s: float
    steps_per_cpu_s: float
    load: float
    per_worker_cores: list[float] = field(default_factory=list)

    def line(self) -> str:
        """One human-readable line."""
        broker = "-" if self.broker_cores is None else f"{self.broker_cores:.2f}"
        spread = "/".join(f"{c:.2f}" for c in self.per_worker_cores)
        return (
            f"w={self.workers}  {self.rate:8,.0f} steps/s  p99 step {self.step_p99_ms:6.1f} ms  "
            f"cores: workers {self.worker_cores:.2f} ({spread}) driver {self.driver_cores:.2f} "
            f"broker {broker}  steps per CPU-s: workers {self.steps_per_worker_cpu_s:,.0f}, "
            f"all {self.steps_per_cpu_s:,.0f}  "
            f"load {self.load:.1f}"
        )


async def measure(
    ctx: BenchContext,
    url: str,
    broker: Service | None,
    workers: int,
    runs: int,
    partitions: int,
    rounds: int,
) -> Measured:
    """Start ``workers`` processes on a fresh prefix, warm up, time ``rounds`` rounds."""
    prefix = ctx.prefix("s")
    async with Engine(
        url, [make_chain()], prefix=prefix, orchestrate=False, work=False, partitions=partitions
    ) as engine:
        with ProcessPool(ctx.workdir / f"logs-{prefix}", child_env(DEERFLOW_PREFIX=prefix)) as pool:
            start_workers(pool, url, workers, concurrency=max(16, runs))
            await pool.wait_serving(workers)
            # Warm-up: every worker has joined its groups (a larger round adds nothing to that).
            await chain_round(engine, min(runs, WARM_UP_RUNS))
            pids = [proc.pid for proc in pool.procs]
            before = [cpu_seconds(pid) for pid in pids]
            broker_before = broker.cpu_seconds() if broker else 0.0
            driver_before, wall = time.process_time(), time.perf_counter()
            steps = p99 = 0.0
            for _ in range(rounds):
                metrics = await chain_round(engine, runs)
                steps += runs * CHAIN_STEPS
                p99 = max(p99, metrics["step_ms_p99"])
            elapsed = time.perf_counter() - wall
            driver = (time.process_time() - driver_before) / elapsed
            used = [cpu_seconds(pid) - b for pid, b in zip(pids, before, strict=True)]
            if not pool.alive():
                raise RuntimeError(f"a worker process died:\n{pool.logs()}")
    broker_cores = (broker.cpu_seconds() - broker_before) / elapsed if broker else None
    cores = sum(used) / elapsed + driver + (broker_cores or 0.0)
    return Measured(
        workers=workers,
        rate=steps / elapsed,
        step_p99_ms=p99,
        worker_cores=sum(used) / elapsed,
        driver_cores=driver,
        broker_cores=broker_cores,
        steps_per_worker_cpu_s=steps / max(sum(used), 1e-9),
        steps_per_cpu_s=steps / max(cores * elapsed, 1e-9),
        load=os.getloadavg()[0],
        per_worker_cores=[u / elapsed for u in used],
    )


def summary(passes: list[list[Measured]], args: argparse.Namespace) -> str:
    """Markdown: per worker count the medians, and the per-pass ratio to one worker."""
    counts = [m.workers for m in passes[0]]
    base = min(counts)
    lines = [
        f"chains in flight {args.runs}, partitions {args.partitions}, {len(passes)} passes x "
        f"{args.rounds} rounds, {os.cpu_count()} cores, broker {kafka_broker()}",
        "",
        f"| workers | steps/s (median [min-max]) | ÷ {base} worker (median [min-max]) "
        "| worker cores | driver cores | broker cores | steps per CPU-s: workers, all | load |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for count in counts:
        got = [m for one in passes for m in one if m.workers == count]
        ratios = [
            next(m.rate for m in one if m.workers == count)
            / next(m.rate for m in one if m.workers == base)
            for one in passes
        ]
        rates = [m.rate for m in got]
        brokers = [m.broker_cores for m in got if m.broker_cores is not None]
        broker = f"{statistics.median(brokers):.2f}" if brokers else "-"
        lines.append(
            f"| {count} | {statistics.median(rates):,.0f} [{min(rates):,.0f}-{max(rates):,.0f}] "
            f"| {statistics.median(ratios):.2f}x [{min(ratios):.2f}-{max(ratios):.2f}] "
            f"| {statistics.median(m.worker_cores for m in got):.2f} "
            f"| {statistics.median(m.driver_cores for m in got):.2f} | {broker} "
            f"| {statistics.median(m.steps_per_worker_cpu_s for m in got):,.0f}, "
            f"{statistics.median(m.steps_per_cpu_s for m in got):,.0f} "
            f"| {min(m.load for m in got):.1f}-{max(m.load for m in got):.1f} |"
        )
    return "\n".join(lines) + "\n"


async def _main(args: argparse.Namespace) -> None:
    counts = [int(c) for c in args.workers.split(",") if c.strip()]
    if not counts or min(counts) < 1:
        raise SystemExit("--workers: a comma-separated list of counts >= 1, such as 1,2,4")
    if args.partitions < max(counts):
        raise SystemExit(f"--partitions {args.partitions} < {max(counts)} workers: some would idle")
    ctx = BenchContext(quick=False, settings=Settings())
    try:
        url = ctx.kafka_url()
        broker = ctx.kafka_service
        passes: list[list[Measured]] = []
        for n in range(args.pairs):
            order = counts if n % 2 == 0 else counts[::-1]
            done = []
            for count in order:
                got = await measure(
                    ctx, url, broker, count, args.runs, args.partitions, args.rounds
                )
                print(f"pass {n + 1}  {got.line()}", flush=True)
                done.append(got)
            passes.append(sorted(done, key=lambda m: m.workers))
        text = summary(passes, args)
        print("\n" + text)
        args.out.mkdir(parents=True, exist_ok=True)
        out = args.out / f"scaling-{args.stem}.md"
        lines = "\n".join(f"    {m.line()}" for one in passes for m in one)
        command = " ".join(["python -m bench.scaling", *sys.argv[1:]])
        out.write_text(f"# {command}\n\n{text}\nEvery pass:\n\n{lines}\n")
        print(f"written to {out}")
    finally:
        ctx.close()


def main() -> None:
    """``python -m bench.scaling``: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,2,4", help="worker process counts")
    parser.add_argument("--runs", type=int, default=500, help="chains in flight at once")
    parser.add_argument("--partitions", type=int, default=8, help="partitions of every topic")
    parser.add_argument("--pairs", type=int, default=3, help="passes over the worker counts")
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds per measurement")
    parser.add_argument("--stem", default="latest", help="the summary is OUT/scaling-STEM.md")
    parser.add_argument("--out", type=Path, default=RESULTS, help="default: bench/results")
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
