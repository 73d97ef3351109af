"""Profiles of the engine's hottest path: the 10-step chain of scenario a.

``python -m bench.profile [--runs M] [--rounds R] [--seconds S] [--out DIR]`` writes, into
``bench/results/``:

* ``profile-sqlite-chain.txt``: an in-process engine on SQLite (orchestrator, worker and run
  index in one process), sampled by py-spy (all threads, from outside), then by pyinstrument
  (main thread, with its call tree);
* ``profile-kafka-worker.txt``: py-spy sampling a ``deerflow worker`` subprocess on Tansu (its
  orchestrator and worker) while this process drives chains, plus pyinstrument over the driver
  (which only starts runs and follows the run index).

Each py-spy profile is summarised three ways: time by the innermost deerflow module on the
stack, inclusive time of deerflow functions, and self time by frame.

py-spy needs ptrace rights (root, or ``kernel.yama.ptrace_scope=0``); without them that part is
reported as skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from pyinstrument import Profiler

from bench.context import BenchContext
from bench.harness import Settings
from bench.processes import ProcessPool, child_env, start_workers
from bench.scenarios.overhead import chain_round
from bench.workloads import make_chain
from deerflow import Engine

RESULTS = Path(__file__).resolve().parent / "results"
TOP = 25


def _self_times(profiler: Profiler) -> list[tuple[float, str]]:
    """Self time per function over the whole session (pyinstrument's tree, flattened)."""
    totals: dict[str, float] = collections.defaultdict(float)
    session = profiler.last_session
    root = session.root_frame() if session is not None else None
    stack = [root] if root is not None else []
    while stack:
        frame = stack.pop()
        # Synthetic children ("[self]", awaits) are already in their parent's total_self_time.
        stack.extend(child for child in frame.children if not child.is_synthetic)
        own = frame.total_self_time
        if own > 0:
            totals[f"{frame.function} ({frame.file_path_short}:{frame.line_no})"] += own
    total = sum(totals.values()) or 1.0
    top = sorted(totals.items(), key=lambda item: item[1], reverse=True)[:TOP]
    return [(100.0 * seconds / total, name) for name, seconds in top]


def _table(title: str, rows: list[tuple[float, str]]) -> str:
    lines = [f"## {title}", "", "self %  function"]
    lines += [f"{share:6.1f}  {name}" for share, name in rows]
    return "\n".join(lines) + "\n"


async def _drive(engine: Engine, runs: int, rounds: int) -> float:
    rates = [(await chain_round(engine, runs))["rate"] for _ in range(rounds)]
    return sum(rates) / len(rates)


async def _drive_for(engine: Engine, runs: int, seconds: float) -> float:
    deadline = time.monotonic() + seconds
    rates = []
    while time.monotonic() < deadline:
        rates.append((await chain_round(engine, runs))["rate"])
    return sum(rates) / len(rates)


async def profile_sqlite(ctx: BenchContext, runs: int, rounds: int, seconds: float) -> str:
    """pyinstrument over chains on an in-process SQLite engine."""
    async with Engine(
        ctx.sqlite_url, [make_chain()], prefix=ctx.prefix("p"), concurrency=max(16, runs)
    ) as engine:
        await chain_round(engine, runs)  # warm-up
        rate = await _drive(engine, runs, rounds)  # unprofiled, for comparison
        # One profiler at a time: py-spy samples from outside (all threads, little overhead),
        # then pyinstrument gives the main thread's call tree.
        raw = ctx.workdir / "sqlite.raw"
        spy = await _spy(os.getpid(), seconds, raw)
        spied = await _drive_for(engine, runs, seconds)
        failure = await _spy_result(spy)
        profiler = Profiler(interval=0.001, async_mode="disabled")
        profiler.start()
        traced = await _drive(engine, runs, rounds)
        profiler.stop()
    text = profiler.output_text(unicode=False, color=False, show_all=False)
    return (
        f"# sqlite, in-process engine: {runs} chains x 10 steps; {rate:.0f} steps/s "
        f"unprofiled, {spied:.0f} under py-spy, {traced:.0f} under pyinstrument\n\n"
        + _spy_tables("engine process", raw, failure)
        + "\n"
        + _table("main thread: self time by function (pyinstrument)", _self_times(profiler))
        + "\n## main thread: call tree (pyinstrument)\n\n"
        + text
    )


def _owner(frame: str) -> str | None:
    """``deerflow/engine/_worker.py`` for a py-spy frame in deerflow's code, else ``None``."""
    where = frame.rpartition(" (")[2]
    if "deerflow/" not in where or "deerflow/cli/_app.py" in where or "__main__" in where:
        return None
    return "deerflow/" + where.split("deerflow/", 1)[1].split(":", 1)[0]


def _collapse(raw: Path) -> dict[str, list[tuple[float, str]]]:
    """Shares of samples from py-spy's raw (collapsed) output.

    ``self``: the frame on top of the stack. ``deerflow``: inclusive time of deerflow's own
    functions. ``module``: each sample charged to the innermost deerflow module on its stack
    (library and C time included), so it says which part of the engine the time is spent for.
    """
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    module: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            if _owner(frame) is not None:
                inclusive[frame] += count
        owners = [o for o in map(_owner, frames) if o is not None]
        module[owners[-1] if owners else "(outside deerflow: event loop, libraries)"] += count
    total = total or 1

    def share(counter: collections.Counter[str]) -> list[tuple[float, str]]:
        return [(100.0 * n / total, name) for name, n in counter.most_common(TOP)]

    return {"self": share(own), "deerflow": share(inclusive), "module": share(module)}


def _spy_tables(title: str, raw: Path, failure: str | None) -> str:
    if failure is not None or not raw.exists():
        return f"## {title}\n\npy-spy failed (it needs ptrace rights): {failure}\n"
    parts = _collapse(raw)
    return "\n".join(
        [
            _table(
                f"{title}: time by innermost deerflow module (py-spy, all threads)", parts["module"]
            ),
            _table(f"{title}: inclusive time of deerflow functions (py-spy)", parts["deerflow"]),
            _table(f"{title}: self time by frame (py-spy)", parts["self"]),
        ]
    )


async def _spy(pid: int, seconds: float, raw: Path) -> asyncio.subprocess.Process:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return await asyncio.create_subprocess_exec(
        py_spy,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(int(seconds)),
        "--rate",
        "250",
        "--format",
        "raw",
        "--output",
        str(raw),
        "--nonblocking",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def _spy_result(spy: asyncio.subprocess.Process) -> str | None:
    out, _ = await spy.communicate()
    return None if spy.returncode == 0 else out.decode(errors="replace")[-500:]


async def profile_kafka(ctx: BenchContext, runs: int, seconds: float, client: str = "") -> str:
    """py-spy over one ``deerflow worker`` subprocess, pyinstrument over the driver
    (``client``: the Kafka log's ``client=`` option, its default if empty)."""
    prefix = ctx.prefix("p")
    raw = ctx.workdir / "worker.raw"
    url = ctx.kafka_url()
    if client:
        url += ("&" if "?" in url else "?") + f"client={client}"
    async with Engine(
        url, [make_chain()], prefix=prefix, orchestrate=False, work=False, partitions=4
    ) as engine:
        with ProcessPool(ctx.workdir / f"logs-{prefix}", child_env(DEERFLOW_PREFIX=prefix)) as pool:
            start_workers(pool, url, 1, concurrency=max(16, runs))
            await chain_round(engine, runs)  # warm-up: the worker has joined its groups
            spy = await _spy(pool.procs[0].pid, seconds, raw)
            profiler = Profiler(interval=0.0005, async_mode="disabled")
            profiler.start()
            rate = await _drive_for(engine, runs, seconds)
            profiler.stop()
            failure = await _spy_result(spy)
    header = (
        f"# kafka (Tansu), 1 worker process, {runs} chains x 10 steps, "
        f"client {client or 'default'}, "
        f"{rate:.0f} steps/s while profiled\n\n"
    )
    worker = _spy_tables("worker process", raw, failure)
    return (
        header
        + worker
        + "\n"
        + _table("driver process: self time by function (pyinstrument)", _self_times(profiler))
    )


async def _main(args: argparse.Namespace) -> None:
    ctx = BenchContext(quick=False, settings=Settings())
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        if "sqlite" in args.stores:
            text = await profile_sqlite(ctx, args.runs, args.rounds, args.seconds)
            (args.out / "profile-sqlite-chain.txt").write_text(text)
        if "kafka" in args.stores:
            text = await profile_kafka(ctx, args.runs, args.seconds, args.kafka_client)
            name = "profile-kafka-worker" + (f"-{args.kafka_client}" if args.kafka_client else "")
            (args.out / f"{name}{args.suffix}.txt").write_text(text)
    finally:
        ctx.close()


def main(argv: list[str] | None = None) -> None:
    """Parse the options and write the profiles."""
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--runs", type=int, default=50, help="concurrent chains")
    parser.add_argument("--rounds", type=int, default=10, help="rounds (sqlite)")
    parser.add_argument("--seconds", type=float, default=15.0, help="sampling time (kafka)")
    parser.add_argument("--stores", default="sqlite,kafka")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--kafka-client", default="", help="the Kafka log's client= (profile-kafka-worker-NAME)"
    )
    parser.add_argument("--suffix", default="", help="appended to the Kafka profile's file name")
    args: Any = parser.parse_args(argv)
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()
