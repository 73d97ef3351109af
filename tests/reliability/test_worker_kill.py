"""Guarantee: runs complete exactly once although worker processes are SIGKILLed and restarted.

Runs of a 3-step workflow are started at a steady pace while randomly chosen ``deerflow worker``
processes are killed with SIGKILL and started again. Criteria: the history checker finds every
run requested once and ended ``completed`` once, with nothing after its end and no gaps; the
idempotent sink holds exactly 3 effects per run.
"""

from __future__ import annotations

import asyncio
import random
import re
import signal
import sqlite3
import subprocess
import time
from dataclasses import dataclass

import pytest

from deerflow import Engine, Workflow
from deerflow.cli._loader import load_module_workflows
from deerflow.log.base import TopicPartition
from tests.engine.apps.sink import Sink
from tests.processes import Workers
from tests.reliability.conftest import APPS
from tests.reliability.history_checker import check_log

APP = APPS / "steps_app.py"


@dataclass(frozen=True)
class Size:
    runs: int
    kills: int
    workers: int


async def start_paced(client: Engine, wf: Workflow, runs: int, seconds: float) -> list[str]:
    """Start ``runs`` runs spread over ``seconds``; return their ids."""
    ids = []
    for i in range(runs):
        handle = await client.start(wf, params={"n": i}, run_id=f"kill-{i:05d}")
        ids.append(handle.run_id)
        await asyncio.sleep(seconds / runs)
    return ids


def bodies_running(sink: Sink, pid: int) -> int:
    """Task bodies process ``pid`` started and has not finished (from the sink's tables)."""
    with sqlite3.connect(f"{sink.path}.starts") as starts, sqlite3.connect(sink.path) as ends:
        begun = starts.execute("SELECT COUNT(*) FROM attempts WHERE pid = ?", (pid,))
        done = ends.execute("SELECT COUNT(*) FROM attempts WHERE pid = ?", (pid,))
        return int(begun.fetchone()[0]) - int(done.fetchone()[0])


async def busy_worker(pool: Workers, sink: Sink, rng: random.Random) -> subprocess.Popen[bytes]:
    """A live worker in the middle of task bodies (so the kill interrupts real work)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        busy = [p for p in pool.procs if p.poll() is None and bodies_running(sink, p.pid) > 0]
        if busy:
            return rng.choice(busy)
        await asyncio.sleep(0.02)
    raise AssertionError(f"no worker got busy\n{pool.logs()}")


async def snapshot_written(client: Engine, within: float = 60) -> None:
    """Wait until every history partition has a snapshot a takeover can load (its write is
    committed to the snapshots' group), failing after ``within`` seconds."""
    topic, group = client.topics.snapshots, client.topics.snapshot_group
    # As many as the history has: asking the snapshot topic's own count would create it, with
    # the log's default count, if no owner had created it yet.
    count = await client.log.partition_count(client.topics.history)
    partitions = [TopicPartition(topic, p) for p in range(count)]
    deadline = time.monotonic() + within
    while not all((await client.log.group_offsets(group, partitions)).values()):
        if time.monotonic() > deadline:
            raise AssertionError(f"no snapshot was written in {within}s of runs")
        await asyncio.sleep(0.1)


async def kill_and_restart(
    pool: Workers,
    client: Engine,
    sink: Sink,
    size: Size,
    rng: random.Random,
    pace: float,
    *,
    snapshots: bool = False,
) -> list[int]:
    """SIGKILL a random busy worker ``size.kills`` times, restarting one each time (with
    ``snapshots``, not before one was written: on a slow machine the first kills can come
    before any, and then no takeover has one to load).

    Returns how many runs were unfinished at each kill (all must be > 0 for the test to mean
    anything).
    """
    in_flight = []
    for _ in range(size.kills):
        await asyncio.sleep(rng.uniform(0.5, 1.5) * pace / (size.kills + 1))
        if snapshots:
            await snapshot_written(client)
        victim = await busy_worker(pool, sink, rng)
        in_flight.append(sum(1 for s in client.index.runs.values() if not s.terminal))
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        await asyncio.sleep(rng.uniform(0.1, 0.8))
        pool.start(APP, concurrency=8)
    return in_flight


async def kill_workers_during_runs(
    store: str,
    pool: Workers,
    sink: Sink,
    size: Size,
    rng: random.Random,
    timeout: float,
    *,
    snapshot_every: int | None = None,
) -> None:
    workflows, wf = load_module_workflows(str(APP))
    assert wf is not None
    pool.env["STEP_SLEEP"] = "0.1"  # tasks long enough for kills to land inside them
    if snapshot_every is not None:  # every takeover loads a snapshot; kills land in writes
        pool.env["DEERFLOW_SNAPSHOT_EVERY"] = str(snapshot_every)
    for _ in range(size.workers):
        pool.start(APP, concurrency=8)
    pace = max(4.0, size.runs / 40)  # seconds over which runs are started
    began = time.monotonic()
    async with Engine(store, workflows, orchestrate=False, work=False) as client:
        await client.index.start()
        starting = asyncio.create_task(start_paced(client, wf, size.runs, pace))
        in_flight = await kill_and_restart(
            pool, client, sink, size, rng, pace, snapshots=snapshot_every is not None
        )
        run_ids = await starting
        results = [await client.wait(rid, timeout=timeout) for rid in run_ids]
        history = await check_log(client.log, client.topics.history, {wf.name: wf})
    started = Sink(f"{sink.path}.starts").executions()
    interrupted = started - sink.executions()
    print(
        f"{size}: {time.monotonic() - began:.1f}s, unfinished at kills {in_flight}, "
        f"{history.summary()}, {sink.effects()} effects, {started} bodies started, "
        f"{interrupted} of them killed mid-body, {sink.executions()} finished"
    )
    assert [r.status for r in results] == ["completed"] * size.runs, pool.logs()
    assert [r.output for r in results] == [{"n": i + 2} for i in range(size.runs)]
    history.assert_ok(run_ids, exact=True)
    assert sink.effects() == 3 * size.runs
    assert all(n > 0 for n in in_flight), f"a kill landed when nothing ran: {in_flight}"
    assert interrupted > 0, "no kill interrupted a task body: the test tested little"
    if snapshot_every is not None:
        logs = pool.logs(chars=10_000_000)  # whole logs: a takeover's line comes early
        loaded = [int(n) for n in re.findall(r"partitions: (\d+) snapshots", logs)]
        assert sum(loaded) > 0, f"no takeover loaded a snapshot: {loaded}"


@pytest.mark.kafka
@pytest.mark.timeout(300)
async def test_two_kafka_workers_killed_at_random_lose_and_repeat_nothing(
    kafka_url, kafka_pool, sink, rng
):
    await kill_workers_during_runs(kafka_url, kafka_pool, sink, Size(100, 2, 2), rng, 120)


async def test_the_only_sqlite_worker_killed_and_restarted_loses_and_repeats_nothing(
    sqlite_pool, sink, rng
):
    await kill_workers_during_runs(sqlite_pool.store, sqlite_pool, sink, Size(100, 2, 1), rng, 120)


@pytest.mark.kafka
@pytest.mark.timeout(300)
async def test_kafka_workers_killed_while_snapshotting_every_few_records_lose_nothing(
    kafka_url, kafka_pool, sink, rng
):
    await kill_workers_during_runs(
        kafka_url, kafka_pool, sink, Size(100, 2, 2), rng, 120, snapshot_every=3
    )


async def test_the_sqlite_worker_killed_while_snapshotting_every_few_records_loses_nothing(
    sqlite_pool, sink, rng
):
    await kill_workers_during_runs(
        sqlite_pool.store, sqlite_pool, sink, Size(100, 2, 1), rng, 120, snapshot_every=3
    )


@pytest.mark.slow
@pytest.mark.kafka
@pytest.mark.timeout(1800)
async def test_full_size_1000_runs_10_kills_on_kafka(kafka_url, kafka_pool, sink, rng):
    await kill_workers_during_runs(kafka_url, kafka_pool, sink, Size(1000, 10, 2), rng, 600)


@pytest.mark.slow
@pytest.mark.timeout(1800)
async def test_full_size_1000_runs_10_kills_on_sqlite(sqlite_pool, sink, rng):
    await kill_workers_during_runs(
        sqlite_pool.store, sqlite_pool, sink, Size(1000, 10, 1), rng, 600
    )
