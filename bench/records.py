"""How many records deerflow writes per step: counted in the log itself around a round.

The throughput rows compare engine steps with baseline rows or messages, one each; the engine
writes several records per step (history events, task messages). Counting them where they are
stored (the SQLite file's rows, the Kafka topics' end offsets) lets a reader set the ratio
against the records both sides move.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient


def sqlite_records(path: Path, prefix: str) -> int:
    """Records of the topics named ``prefix.*`` in the log file at ``path``."""
    conn = sqlite3.connect(path)
    try:
        row = conn.execute(
            "SELECT COUNT(*) FROM records WHERE topic LIKE ? ESCAPE '\\'",
            (prefix.replace("_", "\\_").replace("%", "\\%") + ".%",),
        ).fetchone()
        return int(row[0])
    finally:
        conn.close()


async def kafka_records(bootstrap: str, prefix: str) -> int:
    """Records ever written to the topics named ``prefix.*`` (the sum of their end offsets)."""
    # The partitions come from the admin client's metadata: a bare consumer knows only the
    # topics it has asked about (Apache Kafka answers a metadata request for none with none).
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        topics = [t for t in await admin.list_topics() if t.startswith(prefix + ".")]
        described = await admin.describe_topics(topics) if topics else []
    finally:
        await admin.close()
    partitions = [
        TopicPartition(topic["topic"], part["partition"])
        for topic in described
        for part in topic["partitions"]
    ]
    if not partitions:
        return 0
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(partitions)
        return sum(ends.values())
    finally:
        await consumer.stop()
