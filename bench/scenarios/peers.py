"""f. Peers on the same machine: the chain, fan-out and I/O-map workloads on DBOS, Celery, Restate.

* DBOS (PyPI ``dbos``) on an SQLite file, in a subprocess of its own
  (:mod:`bench.peers.dbos_runner`), against deerflow in-process on the run's SQLite file.
  Its fan-out is ``asyncio.gather`` of steps inside one workflow, the lightest form DBOS offers.
* Celery with Redis (Debian ``redis-server`` started on a free port, one worker process with
  a thread pool, late acks) against deerflow in-process on Kafka (a broker too).
* Restate (npm ``@restatedev/restate-server``, PyPI ``restate-sdk`` under Hypercorn; see
  :mod:`bench.peers.restate_stack`) against deerflow in-process on Kafka: both are servers
  with a durable log of their own. Every workload is invocations through Restate's HTTP
  ingress, each made of ``ctx.run`` steps (:mod:`bench.peers.restate_app`).

Each peer also runs the high-concurrency chain of scenario a's limit rows: as many chains in
flight at once as its first limit size (500; ``--quick``: 20); deerflow's side runs them on an
engine of their own with as many worker slots (the other rows keep 16, the I/O maps'
concurrency), started outside the timed round.

Ratios are deerflow ÷ peer on throughput (higher is better); the goal is to be ahead of each
peer on every workload (≥ 1x). A peer that cannot be installed or started is reported as
``skipped: <reason>`` (the reason names the install command).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench.context import BenchContext
from bench.harness import Comparison, Goal, Metric, Metrics, Skip, skipped_rows
from bench.peers import restate_stack
from bench.processes import ProcessPool, child_env
from bench.scenarios.fanout import fanout_time
from bench.scenarios.mapreduce import _timed_run
from bench.scenarios.overhead import chain_round
from bench.services import ServiceUnavailable
from bench.workloads import CHAIN_STEPS, make_chain, make_fanout, make_sleepmap
from deerflow import Engine

SCENARIO = "f. peers"
AHEAD = Goal(">=", 1.0)
Workload = Callable[[], Awaitable[Metrics]]


def _deerflow_workloads(ctx: BenchContext, engine: Engine, url: str) -> dict[str, Workload]:
    s = ctx.sizes

    async def in_flight() -> Metrics:
        # An engine of its own with a slot per chain, as scenario a's limit rows have (the
        # shared one keeps the I/O maps' concurrency); a fresh prefix, and a warm-up round,
        # so the timed round neither rebuilds earlier rounds nor waits for group joins.
        runs = s.limit_chains[0]
        async with Engine(
            url, [make_chain()], prefix=ctx.prefix("f"), concurrency=max(16, runs)
        ) as many:
            await chain_round(many, s.peer_runs)
            return await chain_round(many, runs)

    async def fanout() -> Metrics:
        measured = await fanout_time(engine, s.peer_fanout)
        return {"rate": measured["tasks_per_s"]}

    return {
        "chain": lambda: chain_round(engine, s.peer_runs),
        "chains_in_flight": in_flight,
        "fanout": fanout,
        "iomap": lambda: _timed_run(
            engine, "bench_sleepmap", {"n": s.peer_io_maps, "delay": s.io_delay}, s.peer_io_maps
        ),
    }


async def _compare_all(
    ctx: BenchContext, peer: str, store: str, theirs: dict[str, Workload], ours: dict[str, Workload]
) -> None:
    s = ctx.sizes
    names = {
        "chain": f"{s.peer_runs} chains x {CHAIN_STEPS} steps",
        "chains_in_flight": f"{s.limit_chains[0]} chains x {CHAIN_STEPS} steps in flight",
        "fanout": f"fan-out of {s.peer_fanout:,}",
        "iomap": f"{s.peer_io_maps} I/O maps x {s.io_delay * 1000:g} ms, "
        f"concurrency {s.io_concurrency}",
    }
    units = {
        "chain": "steps/s",
        "chains_in_flight": "steps/s",
        "fanout": "tasks/s",
        "iomap": "maps/s",
    }
    for key, label in names.items():
        await ctx.compare(
            Comparison(
                SCENARIO,
                f"{peer}: {label}",
                peer,
                f"deerflow ({store})",
                theirs[key],
                ours[key],
                [Metric("rate", "throughput", units[key], AHEAD)],
            )
        )


class _DbosProcess:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def ask(self, line: str, timeout: float = 300.0) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()
        reply = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not reply:
            raise RuntimeError("the DBOS process exited")
        data: dict[str, Any] = json.loads(reply)
        return data

    def rate(self, command: str, items: int) -> Workload:
        async def measure() -> Metrics:
            return {"rate": items / (await self.ask(command))["seconds"]}

        return measure


def _dbos_python() -> str:
    """The interpreter of the DBOS peer: ``$BENCH_DBOS_PYTHON`` (a virtualenv of its own, since
    dbos and the faust extra want different croniter versions), else this one."""
    return os.environ.get("BENCH_DBOS_PYTHON") or sys.executable


async def _dbos(ctx: BenchContext) -> None:
    if os.environ.get("BENCH_DBOS_PYTHON"):
        if not os.access(_dbos_python(), os.X_OK):
            raise Skip(f"BENCH_DBOS_PYTHON={_dbos_python()} is not an interpreter")
    elif importlib.util.find_spec("dbos") is None:
        raise Skip("dbos is not installed (pip install dbos, or BENCH_DBOS_PYTHON=a venv's python)")
    s = ctx.sizes
    proc = await asyncio.create_subprocess_exec(
        _dbos_python(),
        "-m",
        "bench.peers.dbos_runner",
        str(ctx.workdir / "dbos.db"),
        env=child_env(),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    runner = _DbosProcess(proc)
    try:
        assert proc.stdout is not None
        ready = await asyncio.wait_for(proc.stdout.readline(), 60)
        if not ready:
            raise Skip("DBOS did not start")
        many = s.limit_chains[0]
        theirs = {
            "chain": runner.rate(f"chain {s.peer_runs} {CHAIN_STEPS}", s.peer_runs * CHAIN_STEPS),
            "chains_in_flight": runner.rate(f"chain {many} {CHAIN_STEPS}", many * CHAIN_STEPS),
            "fanout": runner.rate(f"fanout {s.peer_fanout}", s.peer_fanout),
            "iomap": runner.rate(
                f"iomap {s.peer_io_maps} {s.io_concurrency} {s.io_delay}", s.peer_io_maps
            ),
        }
        async with Engine(
            ctx.sqlite_url,
            [make_chain(), make_fanout(), make_sleepmap()],
            prefix=ctx.prefix("f"),
            concurrency=s.io_concurrency,
        ) as engine:
            await _compare_all(
                ctx,
                "DBOS (sqlite)",
                "sqlite",
                theirs,
                _deerflow_workloads(ctx, engine, ctx.sqlite_url),
            )
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 15)
        except TimeoutError:
            proc.kill()
            await proc.wait()


def _celery_workloads(ctx: BenchContext) -> dict[str, Workload]:
    from celery import chain, group

    from bench.peers.celery_app import noop, sleepy

    s = ctx.sizes

    def timed(run: Callable[[], None], items: int) -> Workload:
        def go() -> float:
            started = time.perf_counter()
            run()
            return time.perf_counter() - started

        async def measure() -> Metrics:
            return {"rate": items / await asyncio.to_thread(go)}

        return measure

    def chains(runs: int) -> None:
        results = [
            chain(*(noop.s() for _ in range(CHAIN_STEPS))).apply_async() for _ in range(runs)
        ]
        for result in results:
            result.get(timeout=300, interval=0.005)

    many = s.limit_chains[0]
    return {
        "chain": timed(lambda: chains(s.peer_runs), s.peer_runs * CHAIN_STEPS),
        "chains_in_flight": timed(lambda: chains(many), many * CHAIN_STEPS),
        "fanout": timed(
            lambda: (
                group(noop.s(i) for i in range(s.peer_fanout))
                .apply_async()
                .get(timeout=300, interval=0.005)
            ),
            s.peer_fanout,
        ),
        "iomap": timed(
            lambda: (
                group(sleepy.s(s.io_delay) for _ in range(s.peer_io_maps))
                .apply_async()
                .get(timeout=300, interval=0.005)
            ),
            s.peer_io_maps,
        ),
    }


async def _celery(ctx: BenchContext) -> None:
    if importlib.util.find_spec("celery") is None or importlib.util.find_spec("redis") is None:
        raise Skip("celery[redis] is not installed")
    try:
        url = f"redis://{ctx.redis_address()}/0"
    except ServiceUnavailable as exc:
        raise Skip(str(exc)) from exc
    os.environ["BENCH_REDIS_URL"] = url  # read when bench.peers.celery_app is imported
    s = ctx.sizes
    with ProcessPool(ctx.workdir / "logs-celery", child_env(BENCH_REDIS_URL=url)) as pool:
        pool.spawn(
            "celery",
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "bench.peers.celery_app",
                "worker",
                "--pool",
                "threads",
                "--concurrency",
                str(s.io_concurrency),
                "--loglevel",
                "WARNING",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
        )
        theirs = _celery_workloads(ctx)
        from bench.peers.celery_app import noop

        await asyncio.to_thread(lambda: noop.delay().get(timeout=60))  # the worker is up
        async with Engine(
            ctx.kafka_url(),
            [make_chain(), make_fanout(), make_sleepmap()],
            prefix=ctx.prefix("f"),
            concurrency=s.io_concurrency,
        ) as engine:
            await _compare_all(
                ctx,
                "Celery+Redis",
                "kafka",
                theirs,
                _deerflow_workloads(ctx, engine, ctx.kafka_url()),
            )


def _restate_workloads(
    ctx: BenchContext,
    stack: restate_stack.RestateStack,
) -> dict[str, Workload]:
    s = ctx.sizes

    def timed(calls: Callable[[], list[Awaitable[Any]]], expected: Any, items: int) -> Workload:
        async def measure() -> Metrics:
            started = time.perf_counter()
            answers = await asyncio.gather(*calls())
            seconds = time.perf_counter() - started
            if any(answer != expected for answer in answers):  # no number from a broken peer
                raise RuntimeError(f"Restate answered {answers[:3]!r}, expected {expected!r}")
            return {"rate": items / seconds}

        return measure

    io = {"n": s.peer_io_maps, "concurrency": s.io_concurrency, "delay": s.io_delay}
    many = s.limit_chains[0]
    return {
        "chain": timed(
            lambda: [stack.invoke("chain", CHAIN_STEPS) for _ in range(s.peer_runs)],
            CHAIN_STEPS,
            s.peer_runs * CHAIN_STEPS,
        ),
        "chains_in_flight": timed(
            lambda: [stack.invoke("chain", CHAIN_STEPS) for _ in range(many)],
            CHAIN_STEPS,
            many * CHAIN_STEPS,
        ),
        "fanout": timed(
            lambda: [stack.invoke("fanout", s.peer_fanout)], s.peer_fanout, s.peer_fanout
        ),
        "iomap": timed(lambda: [stack.invoke("iomap", io)], s.peer_io_maps, s.peer_io_maps),
    }


async def _restate(ctx: BenchContext) -> None:
    reason = restate_stack.missing()
    if reason is not None:
        raise Skip(reason)
    s = ctx.sizes
    try:
        async with (
            restate_stack.RestateStack(ctx.workdir) as stack,
            Engine(
                ctx.kafka_url(),
                [make_chain(), make_fanout(), make_sleepmap()],
                prefix=ctx.prefix("f"),
                concurrency=s.io_concurrency,
            ) as engine,
        ):
            await _compare_all(
                ctx,
                "Restate",
                "kafka",
                _restate_workloads(ctx, stack),
                _deerflow_workloads(ctx, engine, ctx.kafka_url()),
            )
    except ServiceUnavailable as exc:
        raise Skip(str(exc)) from exc


PEERS = {
    "dbos": ("DBOS", _dbos),
    "celery": ("Celery+Redis", _celery),
    "restate": ("Restate", _restate),
}


async def run(ctx: BenchContext) -> None:
    """DBOS, then Celery, then Restate (``$BENCH_PEERS``, such as ``celery,restate``, runs
    some of them); each may be skipped on its own."""
    chosen = [p.strip() for p in os.environ.get("BENCH_PEERS", ",".join(PEERS)).split(",")]
    unknown = sorted(set(chosen) - set(PEERS) - {""})
    if unknown:
        raise SystemExit(f"BENCH_PEERS: unknown {unknown}, choose from {','.join(PEERS)}")
    for name, part in (PEERS[p] for p in PEERS if p in chosen):
        try:
            await part(ctx)
        except Skip as exc:
            ctx.add(skipped_rows(SCENARIO, name, str(exc)))
