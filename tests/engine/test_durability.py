"""Crashes: a worker killed with SIGKILL mid-task; the run completes, nothing finished is redone."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from pathlib import Path

import pytest

from deerflow import Engine, Workflow
from deerflow.cli._loader import load_module_workflows
from deerflow.core import history as h
from deerflow.log.base import Message, TopicPartition

APPS = Path(__file__).parent / "apps"
sys.path.insert(0, str(APPS))
from sink import Sink  # type: ignore[import-not-found]  # noqa: E402

from tests.logs import history, records, until  # noqa: E402
from tests.processes import kafka_workers, wait_for_file, workers  # noqa: E402, F401
from tests.services import unique_name  # noqa: E402


async def test_a_worker_killed_mid_task_resumes_without_redoing_finished_tasks(
    store, workers, tmp_path
):
    hold, started = Path(os.environ["HOLD_FILE"]), Path(os.environ["STARTED_FILE"])
    hold.write_text("hold")
    workflows, wf = load_module_workflows(str(APPS / "chain_app.py"))
    assert wf is not None
    first = workers.start(APPS / "chain_app.py")
    async with Engine(store, workflows, orchestrate=False, work=False) as client:
        handle = await client.start(wf, params={"n": 40})
        await wait_for_file(started, timeout=60, pool=workers)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        hold.unlink()
        workers.start(APPS / "chain_app.py")
        result = await handle.result(timeout=90)
    assert result.status == "completed"
    assert result.output == {"n": 42}
    sink = Sink(os.environ["SINK_DB"])
    assert sink.effects() == 3
    assert sink.executions(f"{handle.run_id}/first") == 1  # finished before the kill: not redone
    assert sink.executions(f"{handle.run_id}/last") == 1


@pytest.mark.kafka
@pytest.mark.timeout(240)
async def test_two_kafka_workers_one_killed_every_run_completes_exactly_once(
    kafka_url, kafka_workers
):
    runs = 200
    workflows, wf = load_module_workflows(str(APPS / "chain_app.py"))
    assert wf is not None
    victim = kafka_workers.start(APPS / "chain_app.py")
    kafka_workers.start(APPS / "chain_app.py")
    async with Engine(kafka_url, workflows, orchestrate=False, work=False) as client:
        handles = [await client.start(wf, params={"n": i}) for i in range(runs)]
        # The sink is written by the workers themselves, so it shows progress at once; the
        # client's run index may catch up only after every run has ended.
        sink = Sink(os.environ["SINK_DB"])
        await until(lambda: victim.pid in sink.pids() and sink.effects() >= runs // 4, 120)
        victim.send_signal(signal.SIGKILL)
        unfinished = 3 * runs - sink.effects()
        results = [await handle.result(timeout=150) for handle in handles]
        written = await history(client)
    assert [r.status for r in results] == ["completed"] * runs
    assert [r.output for r in results] == [{"n": i + 2} for i in range(runs)]
    for handle in handles:
        events = {e.id: e for e in written if e.run_id == handle.run_id}
        terminal = [e for e in events.values() if e.type in h.TERMINAL_TYPES]
        assert [e.type for e in terminal] == ["RunCompleted"], handle.run_id
        requested = [e for e in events.values() if e.type == "RunRequested"]
        assert len(requested) == 1
    assert sink.effects() == 3 * runs
    assert unfinished > 0, "the kill must land while runs are in flight"
    assert victim.pid in sink.pids() and len(sink.pids()) == 2, "both workers must have worked"


@pytest.mark.kafka
@pytest.mark.timeout(120)
async def test_a_full_worker_given_its_partitions_back_at_once_loses_no_task_message(kafka_url):
    """Every slot busy, the worker's partitions paused: a rebalance revokes them and gives them
    straight back (another member of the workers' group joins for another topic). They come
    back unpaused, and what the worker reads of them while still full must still run."""
    gate = asyncio.Event()
    ran: list[int] = []
    wf = Workflow(name="held")

    @wf.task(id="hold")
    async def hold(context):
        ran.append(context.params["i"])
        await gate.wait()
        return context.params["i"]

    prefix = unique_name("full")
    async with Engine(
        kafka_url, [wf], prefix=prefix, concurrency=1, partitions=1, eager=False
    ) as engine:
        handles = [await engine.start(wf, params={"i": i}) for i in range(4)]
        await until(lambda: len(ran) == 1)  # one running, one waiting for the slot: paused
        other = unique_name("other")
        await engine.log.ensure_topic(other, 1)
        joined = asyncio.Event()

        class Joined:
            async def on_assigned(self, partitions: frozenset[TopicPartition]) -> None:
                joined.set()

            async def on_revoked(self, partitions: frozenset[TopicPartition]) -> None:
                pass

        async with engine.log.consumer(
            engine.topics.worker_group, [other], listener=Joined()
        ) as member:
            while not joined.is_set():
                await member.poll(timeout=0.1)
            await asyncio.sleep(2.5)  # the full worker keeps its place with polls meanwhile
            gate.set()
            results = [await handle.result(timeout=30) for handle in handles]
    assert [(r.status, r.output) for r in results] == [("completed", i) for i in range(4)]


async def test_a_task_message_delivered_again_after_its_outcome_is_not_run_again(store):
    """A crash between an outcome's append and the offset commit delivers the message again.

    Redelivery is simulated by appending the same task message once more: while the run goes
    on (the worker finds the outcome in its orchestrator's state) and after it completed and
    was evicted (the run's tombstone says it ended for good). Neither body runs again.
    """
    calls: Counter[str] = Counter()
    release = asyncio.Event()
    wf = Workflow(name="redelivered")

    @wf.task(id="first")
    def first(context):
        calls["first"] += 1
        return 1

    @wf.task(id="second", depends_on=["first"])
    async def second(context):
        calls["second"] += 1
        await release.wait()
        return context.tasks["first"].output + 1

    async with Engine(store, [wf], eager=False) as engine:
        assert engine.worker is not None and engine.orchestrator is not None
        worker, orchestrator, log = engine.worker, engine.orchestrator, engine.log

        async def deliver_again(task_id: str) -> None:
            [again] = [
                r
                for r in await records(log, engine.topics.tasks)
                if r.key is not None and r.key.endswith(f"/{task_id}")
            ]
            await log.append(
                [
                    Message(
                        topic=again.topic,
                        value=again.value,
                        key=again.key,
                        partition=again.partition,
                    )
                ]
            )

        handle = await engine.start(wf)
        await until(lambda: calls["second"] == 1)  # first's outcome is in
        await deliver_again("first")
        await until(lambda: worker.skipped == 1)
        release.set()
        result = await handle.result(timeout=60)
        await until(lambda: handle.run_id not in orchestrator.runs)  # evicted: a tombstone
        await deliver_again("second")
        await until(lambda: worker.skipped == 2)
        events = await history(engine)
    assert result.status == "completed" and result.output == 2
    assert calls == {"first": 1, "second": 1}
    outcomes = Counter(e.task_id for e in events if isinstance(e, h.TaskCompleted))
    assert outcomes == {"first": 1, "second": 1}


async def test_a_queued_attempt_of_a_run_cancelled_meanwhile_does_not_start(store):
    """Cancelling skips pending tasks; an attempt already queued (waiting for a free slot)
    is not started either once the run has ended cancelled."""
    calls: Counter[str] = Counter()
    release = asyncio.Event()
    wf = Workflow(name="cancelled_queue")

    async def body(context):
        calls[context.task_id] += 1
        await release.wait()  # one slot: whichever starts first holds it, the other waits
        return "done"

    wf.task(id="one")(body)
    wf.task(id="other")(body)

    async with Engine(store, [wf], eager=False, concurrency=1) as engine:
        assert engine.worker is not None and engine.orchestrator is not None
        worker, orchestrator = engine.worker, engine.orchestrator
        handle = await engine.start(wf)
        await until(lambda: sum(calls.values()) == 1)
        first = next(iter(calls))
        await handle.cancel()
        await until(
            lambda: (
                handle.run_id not in orchestrator.runs or orchestrator.runs[handle.run_id].terminal
            )
        )
        release.set()
        result = await handle.result(timeout=60)
        await until(lambda: worker.skipped == 1)
    assert result.status == "cancelled"
    assert calls == {first: 1}
