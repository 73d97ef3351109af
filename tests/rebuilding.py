"""Waiting for a :class:`~deerflow.runtime.RebuildingMember` to have rebuilt its partitions."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from deerflow.log.base import Record, TopicPartition
from deerflow.runtime import Engine, RebuildingMember


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.1)


M = TypeVar("M", bound=RebuildingMember[Any])


async def until_rebuilt(engine: Engine, kind: type[M]) -> M:
    """The engine's member of ``kind``, once every partition assigned to it was rebuilt."""
    member = next(s for s in engine.services if isinstance(s, kind))

    async def rebuilt() -> bool:
        consumer = member._consumer
        return (
            consumer is not None
            and bool(consumer.assignment())
            and all(tp.partition in member.rebuilds for tp in consumer.assignment())
        )

    await until(rebuilt, f"the {member.what} partitions were not rebuilt")
    return member


async def topic_records(member: RebuildingMember[Any]) -> dict[TopicPartition, list[Record]]:
    """Every record of the topic ``member`` rebuilds its partitions from, by partition."""
    log = member.engine.log
    partitions = await log.partition_count(member.topic)
    return await log.read_partitions(
        {TopicPartition(member.topic, p): 0 for p in range(partitions)}
    )
