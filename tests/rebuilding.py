"""Waiting for a :class:`~deerflow.runtime.RebuildingMember` to have rebuilt its partitions,
and what its rebuilds read: the set-up the rebuild tests of its users (matching, flow) share."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from deerflow.log.base import Record, TopicPartition
from deerflow.runtime import Engine, RebuildingMember


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.1)


M = TypeVar("M", bound=RebuildingMember[Any])


@pytest.fixture
def lasting_store(store: str) -> str:
    """The test's store, one that outlives its engine (a rebuild needs a restart): the
    in-memory one is skipped."""
    if store.startswith("memory"):
        pytest.skip("an in-memory store does not outlive its engine")
    return store


def member_of(engine: Engine, kind: type[M]) -> M:
    """The engine's member of ``kind``."""
    return next(s for s in engine.services if isinstance(s, kind))


async def until_rebuilt(engine: Engine, kind: type[M]) -> M:
    """The engine's member of ``kind``, once every partition assigned to it was rebuilt."""
    member = member_of(engine, kind)

    async def rebuilt() -> bool:
        consumer = member._consumer
        return (
            consumer is not None
            and bool(consumer.assignment())
            and all(tp.partition in member.rebuilds for tp in consumer.assignment())
        )

    await until(rebuilt, f"the {member.what} partitions were not rebuilt")
    return member


async def until_stored(
    member: RebuildingMember[Any], also: Callable[[], bool] | None = None
) -> None:
    """Until the offset a rebuild of one of ``member``'s partitions starts from moved (it is
    stored with the member's commits), and ``also()`` holds."""

    async def moved() -> bool:
        return (also is None or also()) and sum(member._stored.values()) > 0

    await until(moved, "no partition's rebuild offset moved")


def records_read(member: RebuildingMember[Any]) -> int:
    """How many records ``member``'s rebuilds read, over its partitions."""
    return sum(records for _, records in member.rebuilds.values())


async def topic_records(member: RebuildingMember[Any]) -> dict[TopicPartition, list[Record]]:
    """Every record of the topic ``member`` rebuilds its partitions from, by partition."""
    log = member.engine.log
    partitions = await log.partition_count(member.topic)
    return await log.read_partitions(
        {TopicPartition(member.topic, p): 0 for p in range(partitions)}
    )


async def topic_size(member: RebuildingMember[Any]) -> int:
    """How many records the topic ``member`` rebuilds its partitions from holds."""
    return sum(len(records) for records in (await topic_records(member)).values())
