"""Run-index cost as the history grows: cold ``list_runs(50)`` / ``get_run(old)`` and RSS.

``python -m bench.history_growth write STORE N`` appends N ended three-task runs (8 history
records each) **in bulk through the log API**: the histories are written directly, as a
finished run leaves them, not run by an engine (running 100k runs would take hours).

``python -m bench.history_growth measure STORE`` then starts a fresh process (this one) that
opens an engine without orchestrator or worker and prints, as one JSON line: the seconds to
the first page of ``list_runs(limit=50)``, to ``get_run`` of the oldest run, and the peak
RSS in MiB. Run it twice: the first process after ``write`` builds the run index; the second
is the cold start that stays (an index kept current by the processes that run workflows).

``python -m bench.history_growth takeover STORE EVERY`` starts a fresh process with an
orchestrator (``snapshot_every=EVERY``; 0: none) and prints, as one JSON line, the seconds
until it owns every history partition (``takeover_s``), the snapshots it loaded, the history
records it folded, the seconds its orderly stop took (it writes snapshots then) and its peak
RSS. Run it with EVERY > 0 twice: the first process folds everything and leaves snapshots,
the second loads them.

``python -m bench.history_growth serve STORE`` starts a fresh process that runs workflows (an
engine with orchestrator, worker and run index, ``snapshot_every`` at its default) and prints,
as one JSON line: the seconds from its start to one new three-task run done (``start_s``), its
peak RSS then, and the steady rate of 50 ten-step chains at once (steps/s, the median of three
rounds). Run it twice as well: the first process folds the history and leaves snapshots.

``python -m bench.history_growth snapshot STORE`` writes, **in bulk**, a base snapshot of each
history partition as far as the run index has applied it (run ``measure`` first): no live run
and the tombstones an owner that folded it would keep (the newest ``DEDUPE_LIMIT`` ended runs
of the partition within ``DEDUPE_WINDOW``). ``serve`` then starts from it, as it would from
the snapshots of a deployment whose owners wrote them as they went (folding 8 million records
once, the first ``serve`` at 1,000,000 runs, takes over an hour of a shared 2-core machine).

``python -m bench.history_growth archive STORE DIR`` archives every ended run to the directory
``DIR`` (retention 0) and, on SQLite, purges them from the store, then deletes their blobs,
printing the runs archived, the seconds taken (archiving and purging, then deleting blobs) and
the store file's size before and after, as one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import resource
import sys
import time
from typing import Any

from deerflow import Engine, Workflow
from deerflow.core import history as h
from deerflow.core.topics import Topics
from deerflow.log import open_log
from deerflow.runtime._archiver import Archiver
from deerflow.runtime._archivestore import open_archive

WORKFLOW = "bulk"
TASKS = ("extract", "transform", "load")
BATCH_RUNS = 2000


def _run_events(run_id: str, ts: float) -> list[h.HistoryEvent]:
    events: list[h.HistoryEvent] = [
        h.RunRequested(
            id=h.event_id(run_id, "requested"),
            run_id=run_id,
            ts=ts,
            workflow=WORKFLOW,
            params={"n": 1},
        )
    ]
    for n, task in enumerate(TASKS):
        events.append(
            h.TaskScheduled(
                id=h.event_id(run_id, task, 1, "scheduled"),
                run_id=run_id,
                ts=ts + n * 0.01,
                task_id=task,
                attempt=1,
            )
        )
        events.append(
            h.TaskCompleted(
                id=h.event_id(run_id, task, 1, "completed"),
                run_id=run_id,
                ts=ts + n * 0.01 + 0.005,
                task_id=task,
                attempt=1,
                output={"rows": n},
                started_at=ts + n * 0.01,
            )
        )
    events.append(
        h.RunCompleted(
            id=h.event_id(run_id, "completed"), run_id=run_id, ts=ts + 0.05, output={"rows": 2}
        )
    )
    return events


async def write(store: str, runs: int) -> None:
    """Append ``runs`` ended runs' histories in bulk (see the module docstring)."""
    topics = Topics.from_env(None)
    log = open_log(store)
    await log.start()
    try:
        await log.ensure_topic(topics.history, 4, keep_forever=True)
        start = time.time() - runs * 0.1
        for first in range(0, runs, BATCH_RUNS):
            messages = [
                h.message(topics.history, event)
                for n in range(first, min(runs, first + BATCH_RUNS))
                for event in _run_events(f"bulk-{n:08d}", start + n * 0.1)
            ]
            await log.append(messages)
    finally:
        await log.stop()


async def measure(store: str) -> dict[str, float]:
    """A fresh process's cold ``list_runs(limit=50)`` and ``get_run`` of the oldest run."""
    began = time.perf_counter()
    async with Engine(store, orchestrate=False, work=False) as engine:
        opened = time.perf_counter()
        page = await engine.list_runs(limit=50)
        listed = time.perf_counter()
        old = await engine.get_run("bulk-00000000")
        got = time.perf_counter()
    assert len(page) == 50 and old.status == "completed", (len(page), old.status)
    return {
        "open_s": round(opened - began, 3),
        "list_runs_50_s": round(listed - opened, 3),
        "get_run_old_s": round(got - listed, 3),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


class _Loads(logging.Handler):
    """Counts what the orchestrator's partition loads report."""

    pattern = re.compile(r"partitions: (\d+) snapshots, (\d+) events")

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.snapshots = self.events = 0

    def emit(self, record: logging.LogRecord) -> None:
        found = self.pattern.search(record.getMessage())
        if found:
            self.snapshots += int(found[1])
            self.events += int(found[2])


async def takeover(store: str, every: int) -> dict[str, float]:
    """A fresh orchestrator's time to own every partition, with or without snapshots."""
    loads = _Loads()
    logger = logging.getLogger("deerflow.orchestrator")
    logger.addHandler(loads)
    logger.setLevel(logging.INFO)
    began = time.perf_counter()
    async with Engine(store, work=False, snapshot_every=every) as engine:
        assert engine.orchestrator is not None
        await engine.orchestrator.settled.wait()
        settled = time.perf_counter()
    stopped = time.perf_counter()
    return {
        "snapshot_every": every,
        "takeover_s": round(settled - began, 3),
        "snapshots_loaded": loads.snapshots,
        "records_folded": loads.events,
        "stop_s": round(stopped - settled, 3),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


async def serve(store: str) -> dict[str, float]:
    """A fresh working process: start -> one new run done, its peak RSS, steady steps/s."""
    from bench.scenarios.overhead import chain_round
    from bench.workloads import make_chain

    fresh = Workflow(name="fresh")
    for n, task in enumerate(TASKS):
        fresh.task(id=task, depends_on=[TASKS[n - 1]] if n else [])(_noop)
    began = time.perf_counter()
    async with Engine(store, [fresh, make_chain()], concurrency=64) as engine:
        done = await (await engine.start(fresh)).result(timeout=3600)
        start_s = time.perf_counter() - began
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        await chain_round(engine, 50)  # warm-up
        rates = sorted([(await chain_round(engine, 50))["rate"] for _ in range(3)])
    assert done.ok, done.error
    return {
        "start_s": round(start_s, 3),
        "peak_rss_mib_at_start": round(rss, 1),
        "steps_per_s": round(rates[1]),
        "steps_per_s_all": [round(r) for r in rates],
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


async def snapshot(store: str) -> dict[str, float]:
    """Write a base snapshot of each partition in bulk (see the module docstring)."""
    import sqlite3

    from deerflow.log.base import TopicPartition
    from deerflow.runtime._snapshots import PartitionImage, Snapshots
    from deerflow.runtime._tombstones import DEDUPE_LIMIT, DEDUPE_WINDOW

    topics = Topics.from_env(None)
    path = store.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        covered = dict(
            conn.execute(
                "SELECT partition_id, next_offset FROM runindex_offsets WHERE topic = ?",
                (topics.history,),
            ).fetchall()
        )
        horizon = time.time() - DEDUPE_WINDOW
        ended: dict[int, list[tuple[str, int, float]]] = {p: [] for p in covered}
        for run_id, partition, at in conn.execute(
            "SELECT run_id, partition_id, finished_at FROM runindex_runs WHERE finished_at >= ? "
            "AND status IN ('completed', 'cancelled') ORDER BY finished_at",
            (horizon,),
        ):
            ended[partition].append((run_id, 0, at))
    log = open_log(store)
    await log.start()
    began = time.perf_counter()
    try:
        snapshots = Snapshots(log, topics)
        await snapshots.load(sorted(covered), len(covered))  # claims the partitions
        for partition, offset in sorted(covered.items()):
            tp = TopicPartition(topics.history, partition)
            [last, *_] = await log.read_partition(tp, offset - 1)
            image = PartitionImage(
                offset, [], ended[partition][-DEDUPE_LIMIT:], {}, last.timestamp_ms
            )
            await snapshots.write(
                partition, len(covered), offset, snapshots.encode(partition, image)
            )
    finally:
        await log.stop()
    return {
        "partitions": len(covered),
        "tombstones": sum(min(len(t), DEDUPE_LIMIT) for t in ended.values()),
        "seconds": round(time.perf_counter() - began, 1),
    }


async def _noop(context: Any) -> int:
    return 1


def _size_mib(store: str) -> float:
    path = store.removeprefix("sqlite:///")
    total = sum(os.path.getsize(path + x) for x in ("", "-wal") if os.path.exists(path + x))
    return round(total / 2**20, 1)


async def archive(store: str, directory: str) -> dict[str, float]:
    """Archive (and on SQLite purge) every ended run; sizes before and after."""
    before = _size_mib(store) if store.startswith("sqlite") else 0.0
    async with Engine(store, orchestrate=False, work=False) as engine:
        archiver = Archiver(engine.index, engine.log, open_archive(directory), 0.0)
        began = time.perf_counter()
        archived, purged = await archiver.archive_once()
        took = time.perf_counter() - began
        began = time.perf_counter()
        swept = await archiver.sweep_once()  # their blobs (a SQLite file has a blob directory)
        sweeping = time.perf_counter() - began
    return {
        "archived": archived,
        "purged": purged,
        "seconds": round(took, 1),
        "swept": swept,
        "sweep_seconds": round(sweeping, 1),
        "store_mib_before": before,
        "store_mib_after": _size_mib(store) if store.startswith("sqlite") else 0.0,
    }


def main(argv: list[str]) -> None:
    """``write STORE N``, ``measure STORE``, ``serve STORE``, ``snapshot STORE``, ``takeover
    STORE EVERY`` or ``archive STORE DIR``."""
    if len(argv) == 3 and argv[0] == "write":
        asyncio.run(write(argv[1], int(argv[2])))
    elif len(argv) == 3 and argv[0] == "takeover":
        print(json.dumps(asyncio.run(takeover(argv[1], int(argv[2])))))
    elif len(argv) == 3 and argv[0] == "archive":
        print(json.dumps(asyncio.run(archive(argv[1], argv[2]))))
    elif len(argv) == 2 and argv[0] == "snapshot":
        print(json.dumps(asyncio.run(snapshot(argv[1]))))
    elif len(argv) == 2 and argv[0] == "serve":
        print(json.dumps(asyncio.run(serve(argv[1]))))
    elif len(argv) == 2 and argv[0] == "measure":
        print(json.dumps(asyncio.run(measure(argv[1]))))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
