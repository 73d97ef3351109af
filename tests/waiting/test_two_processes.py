"""Two ``deerflow worker`` processes on Kafka, one killed while its runs sleep: the other
takes the runs over, wakes each once and hands each the signal sent before its wait, once."""

from __future__ import annotations

import signal
import time
from collections import defaultdict
from pathlib import Path

import pytest

from deerflow import Engine
from deerflow.cli._loader import load_module_workflows
from deerflow.waiting import WaitEnded
from tests.logs import history
from tests.processes import kafka_workers  # noqa: F401

APP = Path(__file__).parent / "apps" / "waits_app.py"


@pytest.mark.kafka
@pytest.mark.timeout(240)
async def test_a_takeover_on_kafka_neither_loses_nor_doubles_a_wake_up_or_a_signal(
    kafka_url, kafka_workers
):
    runs = 12
    workflows, _ = load_module_workflows(str(APP))
    wf = next(w for w in workflows if w.name == "waits")
    victim = kafka_workers.start(APP)
    kafka_workers.start(APP)
    await kafka_workers.wait_serving(2)
    async with Engine(kafka_url, workflows, orchestrate=False, work=False) as client:
        handles = [await client.start(wf) for _ in range(runs)]
        for i, handle in enumerate(handles):
            for _ in range(2):  # sent before the wait begins, and sent again: taken once
                await client.signal(handle.run_id, "go", {"i": i}, signal_id=f"go-{i}")
        wake_ups: list[float] = []
        for handle in handles:
            slept = await client.index.wait(
                handle.run_id, lambda s: "nap" in s.tasks and s.tasks["nap"].status == "waiting", 60
            )
            assert slept is not None, kafka_workers.logs()
            wake_ups.append(slept.tasks["nap"].fire_at or 0.0)
        victim.send_signal(signal.SIGKILL)
        assert time.time() < min(wake_ups), "the kill must land while every run sleeps"
        results = [await handle.result(timeout=150) for handle in handles]
        written = await history(client)
    assert [r.status for r in results] == ["completed"] * runs, kafka_workers.logs()
    assert [r.output for r in results] == [{"i": i} for i in range(runs)]
    ended: dict[str, set[str]] = defaultdict(set)
    for event in written:
        if isinstance(event, WaitEnded):
            ended[event.run_id].add(event.id)  # a record appended twice has one id
    for i, handle in enumerate(handles):
        rid = handle.run_id
        assert ended[rid] == {f"{rid}:nap:1:wait-ended", f"{rid}:go:1:wait-ended:go-{i}"}


@pytest.mark.kafka
@pytest.mark.timeout(240)
async def test_a_deadline_passes_once_after_a_takeover_on_kafka(kafka_url, kafka_workers):
    runs = 12
    workflows, _ = load_module_workflows(str(APP))
    wf = next(w for w in workflows if w.name == "unanswered")
    victim = kafka_workers.start(APP)
    kafka_workers.start(APP)
    await kafka_workers.wait_serving(2)
    async with Engine(kafka_url, workflows, orchestrate=False, work=False) as client:
        handles = [await client.start(wf) for _ in range(runs)]
        deadlines: list[float] = []
        for handle in handles:
            waiting = await client.index.wait(
                handle.run_id, lambda s: "go" in s.tasks and s.tasks["go"].status == "waiting", 60
            )
            assert waiting is not None, kafka_workers.logs()
            deadlines.append(waiting.tasks["go"].fire_at or 0.0)
        victim.send_signal(signal.SIGKILL)
        assert time.time() < min(deadlines), "the kill must land before any deadline"
        results = [await handle.result(timeout=150) for handle in handles]
        written = await history(client)
    assert [r.status for r in results] == ["failed"] * runs, kafka_workers.logs()
    assert {r.tasks["go"].error for r in results} == {"no signal 'go' within 6s"}
    ended: dict[str, set[str]] = defaultdict(set)
    for event in written:
        if isinstance(event, WaitEnded):
            ended[event.run_id].add(event.id)
    assert all(ended[h.run_id] == {f"{h.run_id}:go:1:wait-ended"} for h in handles)
