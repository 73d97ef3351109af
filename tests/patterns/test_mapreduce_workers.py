"""MapReduce across worker processes on Kafka: maps spread over both, a SIGKILL loses nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from deerflow import Engine
from deerflow.cli._loader import load_module_workflows
from tests.engine.apps.sink import Sink
from tests.processes import Workers

APP = Path(__file__).parent / "apps" / "mapreduce_app.py"

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(240)]


def serving(pool: Workers) -> int:
    """How many workers have joined their groups (each prints ``worker on ...`` then)."""
    logs = [p.read_text(errors="replace") for p in pool.log_dir.glob("worker-*.log")]
    return sum("worker on " in text for text in logs)


async def wait_until_serving(pool: Workers, count: int, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while serving(pool) < count:
        if time.monotonic() > deadline:
            pytest.fail(f"workers did not start in {seconds}s\n{pool.logs()}")
        await asyncio.sleep(0.1)


def map_calls_by_pid(run_id: str) -> dict[int, int]:
    with sqlite3.connect(os.environ["SINK_DB"], timeout=30) as db:
        rows = db.execute(
            "SELECT pid, COUNT(*) FROM attempts WHERE key LIKE ? GROUP BY pid", (f"{run_id}/%",)
        ).fetchall()
    return {int(pid): int(n) for pid, n in rows}


async def start_pool(pool: Workers):
    procs = [pool.start(APP, concurrency=4) for _ in range(2)]
    await wait_until_serving(pool, 2)
    return procs


async def test_map_tasks_of_one_run_run_in_both_worker_processes(kafka_url, kafka_workers):
    procs = await start_pool(kafka_workers)
    workflows, wf = load_module_workflows(str(APP))
    assert wf is not None
    async with Engine(kafka_url, workflows, orchestrate=False, work=False) as client:
        handle = await client.start(wf, params={"n": 80, "map_seconds": 0.02})
        result = await handle.result(timeout=120)
    assert result.status == "completed", kafka_workers.logs()
    assert result.output == {"seen": list(range(80)), "total": sum(range(80))}
    by_pid = map_calls_by_pid(handle.run_id)
    assert set(by_pid) == {p.pid for p in procs}, by_pid  # both processes ran map calls
    assert sum(by_pid.values()) == 80
    # Each owns half the task partitions: the owner of the run starts its half at once
    # (eager) and queues the other half to the other process, so neither does most of it.
    assert min(by_pid.values()) >= 20, by_pid


async def test_a_worker_killed_mid_map_reduce_loses_and_double_counts_no_partition(
    kafka_url, kafka_workers
):
    victim, survivor = await start_pool(kafka_workers)
    workflows, wf = load_module_workflows(str(APP))
    assert wf is not None
    async with Engine(kafka_url, workflows, orchestrate=False, work=False) as client:
        handle = await client.start(wf, params={"n": 120, "map_seconds": 0.1})
        deadline = time.monotonic() + 60
        while map_calls_by_pid(handle.run_id).get(victim.pid, 0) < 4:
            assert time.monotonic() < deadline, kafka_workers.logs()
            await asyncio.sleep(0.05)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        done_before_kill = sum(map_calls_by_pid(handle.run_id).values())
        result = await handle.result(timeout=150)
    assert result.status == "completed", kafka_workers.logs()
    # Every partition counted exactly once, whatever ran twice in between.
    assert result.output == {"seen": list(range(120)), "total": sum(range(120))}
    assert done_before_kill < 120, "the kill must land while maps are still running"
    sink = Sink(os.environ["SINK_DB"])
    assert sink.effects() == 120
    assert survivor.pid in map_calls_by_pid(handle.run_id)
