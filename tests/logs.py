"""Reading what an engine wrote, and waiting for what it will do: helpers the engine tests share."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from deerflow import Engine
from deerflow.core import history as h
from deerflow.log.base import EventLog, Record, TopicPartition


async def records(log: EventLog, topic: str) -> list[Record]:
    """Every record of every partition of ``topic``, partition by partition."""
    count = await log.partition_count(topic)
    parts = await log.read_partitions({TopicPartition(topic, p): 0 for p in range(count)})
    return [r for batch in parts.values() for r in batch]


async def history(engine: Engine, run_id: str | None = None) -> list[h.HistoryEvent]:
    """The history's events (of ``run_id`` only, if given), in each partition's order."""
    events = [h.decode(r.value) for r in await records(engine.log, engine.topics.history)]
    return [e for e in events if run_id is None or e.run_id == run_id]


async def until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    """Wait for ``predicate`` to hold; ``TimeoutError`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached in time")
        await asyncio.sleep(0.02)
