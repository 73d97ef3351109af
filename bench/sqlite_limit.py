"""``python -m bench.sqlite_limit [--runs 50,500,5000] [--pairs N]``: scenario a's SQLite rows
alone, with the CPU a step costs.

Each pair times raw inserts (``M`` rows per transaction, 10 transactions, WAL +
``synchronous=FULL``, :func:`bench.scenarios.overhead._raw_inserts`) and then ``M`` 10-step
chains on an in-process engine over the same file (:func:`chain_round`), and prints both rates,
their ratio and the process's CPU time per step (both threads: the event loop's and the SQLite
thread's). CPU per step moves far less than rates on a shared machine, so it is the number to
compare between two checkouts: run this module from each (``PYTHONPATH=/other/checkout``),
alternating.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from bench.scenarios.overhead import _raw_inserts, chain_round
from bench.workloads import CHAIN_STEPS, make_chain
from deerflow import Engine


async def pairs(path: Path, runs: int, count: int, partitions: int) -> list[dict[str, float]]:
    """``count`` pairs of raw inserts and ``runs`` chains, after one warm-up round."""
    out = []
    async with Engine(
        f"sqlite:///{path}",
        [make_chain()],
        prefix=f"limit{runs}",
        partitions=partitions,
        concurrency=max(16, runs),
    ) as engine:
        await chain_round(engine, runs)
        for _ in range(count):
            seconds = await asyncio.to_thread(_raw_inserts, path, "raw", runs, CHAIN_STEPS)
            cpu = time.process_time()
            rate = (await chain_round(engine, runs))["rate"]
            cpu_us = (time.process_time() - cpu) / (runs * CHAIN_STEPS) * 1e6
            raw = runs * CHAIN_STEPS / seconds
            out.append({"raw": raw, "rate": rate, "ratio": rate / raw, "cpu_us": cpu_us})
    return out


def main() -> None:
    """Print one line per pair."""
    parser = argparse.ArgumentParser(prog="python -m bench.sqlite_limit")
    parser.add_argument("--runs", default="50,500", help="chains in flight, comma-separated")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        for runs in (int(n) for n in args.runs.split(",")):
            path = Path(folder) / f"limit-{runs}.db"
            for pair in asyncio.run(pairs(path, runs, args.pairs, args.partitions)):
                print(
                    f"{runs} chains: raw {pair['raw']:,.0f} rows/s, engine {pair['rate']:,.0f} "
                    f"steps/s, ratio {pair['ratio']:.4f}, CPU {pair['cpu_us']:.0f} µs/step",
                    flush=True,
                )


if __name__ == "__main__":
    main()
