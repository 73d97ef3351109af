"""What the log itself keeps under an engine's payload codec."""

from __future__ import annotations

from deerflow import Engine
from deerflow.log.base import Record, TopicPartition
from deerflow.payloads import PayloadLog


async def kept_records(engine: Engine, *topics: str) -> list[Record]:
    """Every record of ``topics`` (default: the history) as the engine's log keeps it, encoded."""
    log = engine.log
    assert isinstance(log, PayloadLog), "the engine has no blob store"
    found: list[Record] = []
    for topic in topics or (engine.topics.history,):
        count = await log.partition_count(topic)
        parts = await log.inner.read_partitions({TopicPartition(topic, p): 0 for p in range(count)})
        found += [record for records in parts.values() for record in records]
    return found
