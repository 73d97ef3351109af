"""What compaction costs an append on the SQLite log, and what it saves.

``python -m bench.compaction [N] [KEYS]`` appends N records of 130 bytes (a schedule state's
size) one append at a time, keyed by KEYS names in turn, to a plain topic and to a topic
ensured with ``compact=True`` of one fresh SQLite file, alternately, three rounds each. It
prints, as one JSON line per topic: the median wall time of an append through
:class:`~deerflow.log.sqlite.SqliteEventLog` (a transaction and its fsync), the CPU time per
record of the same appends written straight to the file without fsync (the SQL's own cost,
where the compacted topic's extra lookup and delete show), and the records the topic keeps.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time

from deerflow.log._sqlitefile import SqliteFile, WriteRequest
from deerflow.log.base import Message, TopicPartition
from deerflow.log.sqlite import SqliteEventLog

VALUE = b"x" * 130
ROUNDS = 3


async def wall(path: str, topic: str, n: int, keys: int) -> float:
    """Median seconds of one append through the log (fsync included)."""
    times = []
    async with SqliteEventLog(f"sqlite:///{path}") as log:
        await log.ensure_topic(topic, 1, compact=topic == "compacted")
        for i in range(n):
            began = time.perf_counter()
            await log.append([Message(topic, VALUE, key=f"schedule-{i % keys}")])
            times.append(time.perf_counter() - began)
    return statistics.median(times)


def cpu(path: str, topic: str, n: int, keys: int) -> float:
    """CPU seconds per record appended straight to the file, without fsync."""
    file = SqliteFile(path)
    file.conn.execute("PRAGMA synchronous=OFF")
    tp = TopicPartition(topic, 0)
    began = time.process_time()
    for i in range(n):
        file.write([WriteRequest([(tp, Message(topic, VALUE, key=f"schedule-{i % keys}"))])])
    spent = (time.process_time() - began) / n
    file.close()
    return spent


def kept(path: str, topic: str) -> int:
    """Records ``topic`` holds now."""
    file = SqliteFile(path)
    count = int(
        file.conn.execute("SELECT COUNT(*) FROM records WHERE topic = ?", (topic,)).fetchone()[0]
    )
    file.close()
    return count


def main(n: int = 2000, keys: int = 10) -> None:
    """Measure both topics (see the module docstring) and print one JSON line for each."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "bench.db")
        results: dict[str, dict[str, list[float]]] = {
            topic: {"wall": [], "cpu": []} for topic in ("plain", "compacted")
        }
        for _ in range(ROUNDS):
            for topic, measured in results.items():
                measured["wall"].append(asyncio.run(wall(path, topic, n, keys)))
                measured["cpu"].append(cpu(path, topic, n, keys))
        for topic, measured in results.items():
            line = {
                "topic": topic,
                "appends": n * ROUNDS * 2,
                "keys": keys,
                "append_median_ms": round(statistics.median(measured["wall"]) * 1e3, 3),
                "cpu_us_per_record": round(min(measured["cpu"]) * 1e6, 1),
                "records_kept": kept(path, topic),
            }
            print(json.dumps(line))


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:3]))
