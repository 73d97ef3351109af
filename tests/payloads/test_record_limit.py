"""Appends the orchestrator decides, each larger than one Kafka record: by reference with a
blob store, else the task or run fails at once, naming itself and the size (never a hang)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest

from deerflow import Concurrency, Engine, Workflow, publish_event
from deerflow.errors import PayloadTooLarge
from deerflow.log.base import Message, TopicPartition
from deerflow.payloads import LocalBlobStore
from deerflow.web._runs import request_retry

pytestmark = pytest.mark.kafka

SIX_HUNDRED_KB = 600 * 1024


def returning(wf: Workflow, task_id: str, size: int = SIX_HUNDRED_KB) -> None:
    """Add a task ``task_id`` to ``wf`` that returns a string of ``size`` characters."""
    wf.task(id=task_id)(lambda context: task_id * size)


def fan_in() -> Workflow:
    wf = Workflow(name="fanin")
    returning(wf, "l")
    returning(wf, "r")

    @wf.task(id="join", depends_on=["l", "r"])
    def join(context):
        return len(context.tasks["l"].output) + len(context.tasks["r"].output)

    @wf.task(id="after", depends_on=["join"])
    def after(context):
        return context.tasks["join"].output

    return wf


def sinks(*task_ids: str) -> Workflow:
    wf = Workflow(name="sinks")
    for task_id in task_ids:
        returning(wf, task_id)
    return wf


@pytest.fixture(autouse=True)
def _prefix(monkeypatch) -> None:
    monkeypatch.setenv("DEERFLOW_PREFIX", f"t{uuid.uuid4().hex[:10]}")
    monkeypatch.delenv("DEERFLOW_BLOBS", raising=False)


async def test_a_fan_in_too_large_for_one_record_fails_its_task_at_once_naming_it(kafka_url):
    wf = fan_in()
    async with Engine(kafka_url, [wf], blobs="none", eager=False) as engine:
        began = time.monotonic()
        handle = await engine.start(wf)
        result = await handle.result(timeout=30)
        elapsed = time.monotonic() - began
        assert result.status == "failed"
        join = result.tasks["join"]
        assert join.status == "failed" and join.attempts == 1
        assert join.error_type == "PayloadTooLarge"
        error = join.error or ""
        assert f"task 'join' of run {handle.run_id!r}" in error and "1.2 MB" in error
        assert "blob store" in error
        assert result.tasks["after"].status == "skipped"
        assert result.tasks["l"].status == "completed"
        # The engine goes on: another run completes after the refused one.
        small = Workflow(name="small")

        @small.task(id="one")
        def one(context):
            return 1

        engine.register(small)
        assert (await (await engine.start(small)).result(timeout=30)).output == 1
    assert elapsed < 20


async def test_with_a_blob_store_the_same_fan_in_completes(kafka_url, tmp_path):
    wf = fan_in()
    blobs = LocalBlobStore(tmp_path / "blobs")
    async with Engine(kafka_url, [wf], blobs=blobs, eager=False) as engine:
        result = await (await engine.start(wf)).result(timeout=60)
    assert result.status == "completed", result.error
    assert result.output == 2 * SIX_HUNDRED_KB


async def test_a_600kb_run_output_completes_without_a_blob_store(kafka_url):
    wf = sinks("a")
    async with Engine(kafka_url, [wf], blobs="none", eager=False) as engine:
        result = await (await engine.start(wf)).result(timeout=30)
    assert result.status == "completed", result.error
    assert result.output == "a" * SIX_HUNDRED_KB


async def test_a_run_output_too_large_for_one_record_fails_the_run_naming_it(kafka_url):
    wf = sinks("a", "b")
    async with Engine(kafka_url, [wf], blobs="none", eager=False) as engine:
        handle = await engine.start(wf)
        result = await handle.result(timeout=30)
        assert result.status == "failed"
        assert result.output is None
        error = result.error or ""
        assert f"run {handle.run_id!r}" in error and "1.2 MB" in error and "output" in error
        assert "blob store" in error
        assert result.tasks["a"].status == "completed"
        # What the run index reads back from the log says the same.
        again = await engine.get_run(handle.run_id)
        assert again is not None and again.status == "failed"
        # A retry ends the same way, at once (its request and a second failure are folded).
        assert await request_retry(engine, handle.run_id) == 1
        for _ in range(50):
            retried = await engine.get_run(handle.run_id)
            if retried.events >= again.events + 2:
                break
            await asyncio.sleep(0.2)
        assert retried.status == "failed" and "1.2 MB" in (retried.error or "")
        assert retried.events == again.events + 2


async def test_a_domain_event_too_large_for_one_record_fails_the_task_that_publishes_it(
    kafka_url,
):
    wf = Workflow(name="announces")

    @wf.task(id="announce")
    def announce(context):
        publish_event("Announced", {"text": "z" * 2 * SIX_HUNDRED_KB}, stream="news")
        return "sent"

    @wf.event_handler("Announced")
    def heard(event):
        pass

    async with Engine(kafka_url, [wf], blobs="none") as engine:
        handle = await engine.start(wf)
        result = await handle.result(timeout=30)
    assert result.status == "failed"
    task = result.tasks["announce"]
    assert task.error_type == "PayloadTooLarge" and task.attempts == 1
    error = task.error or ""
    assert "stream 'news': Announced of 1.2 MB" in error and "blob store" in error


async def test_starting_a_run_with_an_input_too_large_for_one_record_says_so(kafka_url):
    wf = sinks("a")
    async with Engine(kafka_url, [wf], blobs="none") as engine:
        with pytest.raises(PayloadTooLarge) as caught:
            await engine.start(wf, run_id="big-input", input="i" * 2 * SIX_HUNDRED_KB)
        assert (await (await engine.start(wf)).result(timeout=30)).status == "completed"
    error = str(caught.value)
    assert "run 'big-input': RunRequested of 1.2 MB" in error and "blob store" in error


async def test_a_child_run_request_or_output_too_large_for_one_record_fails_its_node(kafka_url):
    # The child's input is both upstream outputs (1.2 MB); the other child returns 1.2 MB.
    echo = Workflow(name="echo")

    @echo.task(id="size")
    def size(context):
        return len(str(context.input))

    doubles = sinks("a", "b")
    parent = Workflow(name="parent")
    returning(parent, "l")
    returning(parent, "r")
    parent.sub_workflow(id="takes", workflow=echo, depends_on=["l", "r"], retries=2)
    parent.sub_workflow(id="gives", workflow=doubles, retries=2)
    async with Engine(kafka_url, [parent], blobs="none", eager=False) as engine:
        handle = await engine.start(parent)
        result = await handle.result(timeout=30)
        gives = await engine.get_run(f"{handle.run_id}.gives.1")
    assert result.status == "failed"
    takes = result.tasks["takes"]
    assert takes.error_type == "PayloadTooLarge" and takes.attempts == 1
    assert f"asked for a child run '{handle.run_id}.takes.1' whose request is 1.2 MB" in (
        takes.error or ""
    )
    assert result.tasks["gives"].error_type == "PayloadTooLarge"
    assert result.tasks["gives"].attempts == 1
    assert gives is not None and gives.status == "failed" and "1.2 MB" in (gives.error or "")


async def test_a_dead_letter_too_large_for_one_record_is_cut_and_the_worker_goes_on(kafka_url):
    wf = sinks("a")
    async with Engine(kafka_url, [wf], blobs="none", eager=False) as engine:
        # Not a task message; as JSON, its 900 kB of quotes escape to 1.8 MB.
        junk = Message(engine.topics.tasks, b'"' * 900_000, key="junk", partition=0)
        await engine.log.append([junk])
        result = await (await engine.start(wf)).result(timeout=30)
        assert result.status == "completed", result.error
        count = await engine.log.partition_count(engine.topics.dlq)
        dlq = {TopicPartition(engine.topics.dlq, p): 0 for p in range(count)}
        for _ in range(50):
            letters = [r for rs in (await engine.log.read_partitions(dlq)).values() for r in rs]
            if letters:
                break
            await asyncio.sleep(0.2)
    [letter] = letters
    body = json.loads(letter.value)
    assert body["value_bytes"] == 900_000 and body["value"] == '"' * (1_000_000 // 8)
    assert body["reason"].startswith("unreadable task message")


async def test_a_flow_controlled_run_failed_for_its_size_frees_its_slot(kafka_url):
    # Each item's output fits a record; collected, they do not: the run fails on the decided
    # TaskCollected, before its end, and must still free its key's one slot.
    wf = Workflow(name="gated", concurrency=Concurrency(limit=1, key="params.customer"))

    @wf.task(id="split")
    def split(context):
        return {"chunks": [context.params["size"]] * 3}

    @wf.parallel_tasks(id="each", depends_on=["split"])
    def each(size, context):
        return "x" * size

    @wf.task(id="count", depends_on=["each"])
    def count(context):
        return sum(map(len, context.parallel_results["each"]))

    async with Engine(kafka_url, [wf], blobs="none", eager=False) as engine:
        large = await engine.start(wf, params={"customer": "c", "size": 400 * 1024})
        failed = await large.result(timeout=30)
        small = await engine.start(wf, params={"customer": "c", "size": 1})
        result = await small.result(timeout=30)
    assert failed.status == "failed" and "TaskCollected" in (failed.error or ""), failed.error
    assert result.status == "completed", result.error  # the slot the failed run held is free
    assert result.output == 3
