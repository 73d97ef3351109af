"""e. Backpressure: a pipeline fed 10x its buffer as fast as possible into a slow sink.

The engine side runs in a subprocess of its own (``python -m bench.scenarios.backpressure
--child B ITEMS PAYLOAD RATE``) so its RSS is the pipeline's alone: a generator offers
``10 x B`` items of ``PAYLOAD`` bytes as fast as the intake takes them, one pass-through stage
(parallelism 4) hands them to a sink that takes ``1 / RATE`` s per item (``time.sleep``). It
reports the throughput, the pipeline's peak in-flight count, and RSS sampled every 10 ms: the
drift is the growth from the moment the pipeline first held ``B`` items to the highest sample
after it. Baseline: the same sink function called for every item in a loop, i.e. the sink's
own rate.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

from bench.context import BenchContext
from bench.harness import Comparison, Goal, Metric, Metrics
from bench.processes import child_env
from deerflow import Backpressure, Pipeline
from deerflow.pipeline import PipelineRuntime, stage

SCENARIO = "e. backpressure"


class PassThrough(Pipeline):
    """One stage that hands each item on."""

    @stage(parallelism=4)
    async def forward(self, item: bytes) -> bytes:
        return item


def slow_sink(rate: float) -> Any:
    """A sink taking ``1 / rate`` seconds per item."""
    pause = 1.0 / rate

    def write(item: Any) -> None:
        time.sleep(pause)

    return write


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _items(count: int, payload: int) -> Iterator[bytes]:
    for _ in range(count):
        yield bytes(payload)


async def _child(buffer: int, count: int, payload: int, rate: float) -> dict[str, float]:
    runtime = PipelineRuntime(
        PassThrough,
        backpressure=Backpressure(buffer, "block"),
        source=_items(count, payload),
        sink=slow_sink(rate),
    )
    samples: list[tuple[bool, int]] = []
    started = time.perf_counter()
    async with runtime:
        while not runtime.done:
            samples.append((runtime.intake.peak_inflight >= buffer, _rss()))
            await asyncio.sleep(0.01)
        report = await runtime.join()
    elapsed = time.perf_counter() - started
    filled = [rss for full, rss in samples if full]
    at_fill = filled[0] if filled else samples[-1][1]
    peak = max(filled) if filled else at_fill
    return {
        "seconds": elapsed,
        "rate": report.items["completed"] / elapsed,
        "peak_in_flight": report.items["peak_in_flight"],
        "completed": report.items["completed"],
        "rss_fill_mb": at_fill / 2**20,
        "drift_pct": 100.0 * (peak - at_fill) / at_fill,
    }


async def _engine(ctx: BenchContext) -> Metrics:
    s = ctx.sizes
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.scenarios.backpressure",
        "--child",
        str(s.bp_buffer),
        str(10 * s.bp_buffer),
        str(s.bp_payload),
        str(s.bp_sink_rate),
        env=child_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"pipeline subprocess failed: {err.decode()[-2000:]}")
    data: dict[str, float] = json.loads(out.decode().strip().splitlines()[-1])
    if data["completed"] != 10 * s.bp_buffer:
        raise RuntimeError(f"pipeline completed {data['completed']} of {10 * s.bp_buffer}")
    data["bound_ratio"] = data["peak_in_flight"] / s.bp_buffer
    return data


async def _baseline(ctx: BenchContext) -> Metrics:
    s = ctx.sizes
    write = slow_sink(s.bp_sink_rate)

    def drive() -> float:
        started = time.perf_counter()
        for item in _items(10 * s.bp_buffer, s.bp_payload):
            write(item)
        return time.perf_counter() - started

    seconds = await asyncio.to_thread(drive)
    return {
        "rate": 10 * s.bp_buffer / seconds,
        "seconds": seconds,
        "peak_in_flight": 1.0,
        "drift_pct": 0.0,
        "bound_ratio": 0.0,
        "rss_fill_mb": 0.0,
    }


async def run(ctx: BenchContext) -> None:
    """One comparison: pipeline vs the sink alone."""
    s = ctx.sizes
    runs: list[Metrics] = []

    async def engine() -> Metrics:
        runs.append(await _engine(ctx))
        return runs[-1]

    async def same_runs() -> Metrics:
        # The bounds of the very runs whose throughput was just reported (in the same order).
        return runs.pop(0)

    await ctx.compare(
        Comparison(
            SCENARIO,
            f"buffer {s.bp_buffer:,}, {10 * s.bp_buffer:,} items of {s.bp_payload:,} B",
            "sink alone",
            "pipeline (subprocess)",
            lambda: _baseline(ctx),
            engine,
            [Metric("rate", "throughput vs sink rate", "items/s", Goal(">=", 0.9))],
            note=f"sink sleeps 1/{s.bp_sink_rate:g} s per item",
        )
    )
    await ctx.compare(
        Comparison(
            SCENARIO,
            "bounds (pipeline subprocess)",
            "",
            "pipeline",
            None,
            same_runs,
            [
                Metric("drift_pct", "RSS drift after the buffer filled", "%", Goal("<=", 10.0)),
                Metric("bound_ratio", "peak in-flight ÷ bound", "", Goal("<=", 1.0)),
                Metric("rss_fill_mb", "RSS when first full", "MiB"),
            ],
        )
    )


def main() -> None:
    """``python -m bench.scenarios.backpressure --child B ITEMS PAYLOAD RATE``."""
    _, flag, buffer, count, payload, rate = sys.argv
    assert flag == "--child"
    result = asyncio.run(_child(int(buffer), int(count), int(payload), float(rate)))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
