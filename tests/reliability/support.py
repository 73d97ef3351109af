"""Helpers shared by the reliability tests: a sink-recording workflow, waiting, dead letters."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest

from deerflow import Engine, Workflow
from deerflow.eventstore.base import TopicPartition
from tests.engine.apps.sink import Sink


def recording_workflow(sink: Sink, name: str = "on_event", *, pause: float = 0.0) -> Workflow:
    """One task that records its effect in ``sink`` and returns what triggered it."""
    wf = Workflow(name=name)

    @wf.task(id="handle", retries=0)
    def handle(context: Any) -> dict[str, Any]:
        if pause:
            time.sleep(pause)
        sink.record(context.idempotency_key, context.attempt)
        event = context.trigger_event  # None for a run started through the API
        return {"type": getattr(event, "type", None), "message": getattr(event, "message", None)}

    return wf


async def eventually(check: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    """Wait until ``check()`` is true; fail naming ``what`` after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.1)


async def all_finished(engine: Engine, count: int, within: float) -> None:
    """Wait until at least ``count`` runs exist and every run has ended."""

    async def done() -> bool:
        runs = await engine.list_runs()
        return len(runs) >= count and all(r.done for r in runs)

    await eventually(done, within, f"{count} finished runs")


async def dead_letters(engine: Engine) -> list[dict[str, Any]]:
    """Every record of the engine's dead-letter topic, decoded."""
    letters: list[dict[str, Any]] = []
    for p in range(await engine.log.partition_count(engine.topics.dlq)):
        part = await engine.log.read_partition(TopicPartition(engine.topics.dlq, p))
        letters += [orjson.loads(r.value) for r in part]
    return letters


def effects_by_run(sink: Sink) -> dict[str, set[str]]:
    """The sink's effects: per run id, the task ids that took effect."""
    with sqlite3.connect(sink.path) as db:
        keys = [row[0] for row in db.execute("SELECT key FROM effects")]
    by_run: dict[str, set[str]] = {}
    for key in keys:
        run_id, _, task_id = key.rpartition("/")
        by_run.setdefault(run_id, set()).add(task_id)
    return by_run


def executions_by_key(sink: Sink) -> Counter[str]:
    """How many times each idempotency key's effect was attempted."""
    with sqlite3.connect(sink.path) as db:
        return Counter(row[0] for row in db.execute("SELECT key FROM attempts"))
