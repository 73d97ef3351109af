"""Task priority: with more queued attempts than worker slots, a worker starts the highest
priority first (the task's, else the run's), and a long-queued one still starts under a steady
stream of higher ones (memory, SQLite, Kafka; two worker processes sharing the queue on Kafka)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from deerflow import DeerflowError, DefinitionError, Engine, Workflow
from tests.flow.apps import prioritised
from tests.logs import until
from tests.processes import kafka_workers  # noqa: F401 - fixture

APP = Path(__file__).parent / "apps.py"


def recording(name: str, started: list[str], hold: asyncio.Event, **task: object) -> Workflow:
    """One task that notes ``params.label`` as it starts, then waits for ``hold``."""
    wf = Workflow(name)

    @wf.task(id="work", **task)  # type: ignore[arg-type]
    async def work(context):
        started.append(context.params["label"])
        await hold.wait()
        return context.params["label"]

    return wf


async def test_one_slot_starts_its_backlog_by_priority_the_tasks_winning_over_the_runs(store):
    started: list[str] = []
    hold = asyncio.Event()
    jobs = recording("jobs", started, hold)
    urgent = recording("urgent", started, hold, priority=5)
    async with Engine(store, [jobs, urgent], concurrency=1) as engine:
        runs = [await engine.start(jobs, params={"label": "first"})]
        await until(lambda: started == ["first"])  # the only slot is taken: the rest queue
        for i in range(3):
            runs.append(await engine.start(jobs, params={"label": f"low{i}"}))
        runs.append(await engine.start(jobs, params={"label": "run3"}, priority=3))
        runs.append(await engine.start(urgent, params={"label": "task5"}))
        # the task's own priority (5) wins over its run's (9): it starts after "run7"
        runs.append(await engine.start(urgent, params={"label": "task5-run9"}, priority=9))
        runs.append(await engine.start(jobs, params={"label": "run7"}, priority=7))
        await until(lambda: engine.worker is not None and engine.worker.waiting() == 7)
        hold.set()
        results = await asyncio.gather(*(run.result(timeout=60) for run in runs))
    assert [r.status for r in results] == ["completed"] * 8
    assert started[:2] == ["first", "run7"]
    assert sorted(started[2:4]) == ["task5", "task5-run9"]
    assert started[4] == "run3"
    assert sorted(started[5:]) == ["low0", "low1", "low2"]


async def test_a_low_priority_attempt_still_starts_under_a_steady_stream_of_high_ones(store):
    started: list[str] = []
    hold = asyncio.Event()
    wf = Workflow("stream")

    @wf.task(id="work")
    async def work(context):
        started.append(context.params["label"])
        await hold.wait()
        await asyncio.sleep(0.02)

    # one point of priority is worth 50 ms of waiting: the low attempt passes high ones
    # (10 points) read more than 0.5 s after it
    async with Engine(store, [wf], concurrency=1, priority_aging=0.05) as engine:
        runs = [await engine.start(wf, params={"label": "first"})]
        await until(lambda: started == ["first"])
        runs.append(await engine.start(wf, params={"label": "low"}))
        for i in range(5):
            runs.append(await engine.start(wf, params={"label": f"high{i}"}, priority=10))
        await until(lambda: engine.worker is not None and engine.worker.waiting() == 6)
        hold.set()
        highs = 5
        # high ones keep coming faster than the slot runs them: one is always waiting
        while "low" not in started or started.index("low") > len(started) - 5:
            assert highs < 400, f"the low attempt never started: {started[:20]}..."
            runs.append(await engine.start(wf, params={"label": f"high{highs}"}, priority=10))
            highs += 1
            await asyncio.sleep(0.005)
        results = await asyncio.gather(*(run.result(timeout=120) for run in runs))
    assert all(r.status == "completed" for r in results)
    position = started.index("low")
    assert 6 <= position < len(started) - 4  # after the highs queued with it, before later ones


async def test_an_attempt_passed_over_is_not_committed_until_it_ran(store):
    """Higher priority ones after it on its partition finish first; a worker that stops then
    commits the partition only up to the attempt passed over, and the next worker runs it."""
    started: list[str] = []
    hold, low_hold = asyncio.Event(), asyncio.Event()
    wf = Workflow("passed")

    @wf.task(id="work")
    async def work(context):
        label = context.params["label"]
        started.append(label)
        await (low_hold if label == "low" else hold).wait()
        return label

    async with Engine(store, [wf], concurrency=1, partitions=1) as engine:
        first = await engine.start(wf, params={"label": "first"})
        await until(lambda: started == ["first"])
        low = await engine.start(wf, params={"label": "low"})
        highs = [await engine.start(wf, params={"label": f"high{i}"}, priority=5) for i in range(3)]
        await until(lambda: engine.worker is not None and engine.worker.waiting() == 4)
        hold.set()
        for run in [first, *highs]:
            assert (await run.result(timeout=60)).status == "completed"
        await until(lambda: started[-1] == "low")  # the last to start, and it never ends here
        assert engine.worker is not None
        await engine.worker.stop(drain_timeout=0.1)  # cancelled: its message is not done
    assert started == ["first", "high0", "high1", "high2", "low"]
    low_hold.set()
    async with Engine(store, [wf], concurrency=1, partitions=1) as engine:
        result = await engine.wait(low.run_id, timeout=60)
    assert result.status == "completed"
    assert result.output == "low"
    assert started.count("low") == 2  # delivered again: started once more, and completed


def test_a_bad_priority_fails_where_the_task_is_defined():
    wf = Workflow("bad")
    with pytest.raises(DefinitionError) as caught:

        @wf.task(priority="high")  # type: ignore[arg-type]
        def send(context):
            return None

    assert str(caught.value) == (
        "workflow 'bad', task 'send': priority must be a whole number, not 'high'"
    )
    with pytest.raises(DefinitionError, match="task 'flag': priority must be a whole number"):
        wf.task(id="flag", priority=True)(lambda context: None)


@pytest.mark.kafka
@pytest.mark.timeout(240)
async def test_two_kafka_worker_processes_each_start_their_backlog_by_priority(
    kafka_url, kafka_workers
):
    workers = kafka_workers
    hold, started = Path(os.environ["HOLD_FILE"]), Path(os.environ["STARTED_FILE"])
    hold.write_text("hold")
    for _ in range(2):  # one slot each; every attempt of the test fits in what they read ahead
        workers.start_worker(APP, concurrency=1, args=["--prefetch", "64"])
    await workers.wait_serving(2)
    async with Engine(kafka_url, [prioritised], orchestrate=False, work=False) as client:
        # 16 of each: each owner places its attempts round-robin over the 8 partitions, and one
        # of them places at least 8 of each kind, so both workers get both kinds
        runs = [await client.start(prioritised, params={"label": f"low{i}"}) for i in range(16)]
        runs += [
            await client.start(prioritised, params={"label": f"high{i}"}, priority=5)
            for i in range(16)
        ]

        def lines() -> list[list[str]]:
            text = started.read_text() if started.exists() else ""
            return [line.split() for line in text.splitlines()]

        try:  # each worker's slot is taken
            await until(lambda: len(lines()) == 2, timeout=60)
        except TimeoutError:
            pytest.fail(f"started: {lines()}\n{workers.logs()}")
        await asyncio.sleep(3.0)  # the rest are queued, and polled by the worker of each
        hold.unlink()
        results = await asyncio.gather(*(run.result(timeout=120) for run in runs))
    assert [r.status for r in results] == ["completed"] * 32, workers.logs()
    by_worker: dict[str, list[str]] = {}
    for pid, label in lines():
        by_worker.setdefault(pid, []).append(label)
    assert len(by_worker) == 2, by_worker
    for order in by_worker.values():
        queued = order[1:]  # the first took the slot while the others were being queued
        highs = [i for i, label in enumerate(queued) if label.startswith("high")]
        lows = [i for i, label in enumerate(queued) if label.startswith("low")]
        assert highs and lows, by_worker
        assert max(highs) < min(lows), by_worker


def test_a_bad_prefetch_or_aging_is_refused_when_the_engine_is_made():
    with pytest.raises(DeerflowError) as caught:
        Engine("memory://", prefetch=0)
    assert str(caught.value) == "prefetch must be a whole number of 1 or more, not 0"
    with pytest.raises(DeerflowError, match=r"priority_aging must be a number of seconds > 0"):
        Engine("memory://", priority_aging=-1)
