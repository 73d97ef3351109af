"""A SQLite log reads back what its own process just wrote from memory: the same records.

Readers of the writing process are answered from the newest records it appended (no trip to
the file); these tests hold that the answers are exactly what the file holds, also when a
second log on the same file writes to the same partitions in between.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from deerflow.eventstore import Message, Record, SqliteEventLog, TopicPartition
from deerflow.log._recent import RecentRecords


def _seen(records: list[Record]) -> list[tuple[object, ...]]:
    return [
        (r.topic, r.partition, r.offset, r.key, r.value, r.headers, r.timestamp_ms) for r in records
    ]


async def _read_all(log: SqliteEventLog, tp: TopicPartition, count: int) -> list[Record]:
    got: list[Record] = []
    async with log.reader({tp: 0}) as reader:
        for _ in range(200):
            got += await reader.poll(timeout=0.05)
            if len(got) >= count:
                break
    return got


async def test_records_read_back_by_the_writing_process_equal_the_files(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    tp = TopicPartition("t", 0)
    # A long poll interval: every answer after the first read comes from memory.
    async with SqliteEventLog(url, poll_interval=30.0) as log:
        await log.ensure_topic("t", 1)
        async with log.reader({tp: 0}) as reader:
            assert await reader.poll() == []
            await asyncio.gather(
                *(
                    log.append([Message("t", b"v%d" % i, key="k", headers=(("h", b"%d" % i),))])
                    for i in range(50)
                )
            )
            live = await reader.poll(timeout=1.0)
    async with SqliteEventLog(url) as reopened:
        stored = await _read_all(reopened, tp, 50)
    assert len(stored) == 50
    assert _seen(live) == _seen(stored)
    assert live[3].headers == (("h", b"3"),)


async def test_two_logs_writing_one_partition_are_read_whole_and_in_order(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    tp = TopicPartition("t", 0)
    first = SqliteEventLog(url, poll_interval=30.0)
    async with first, SqliteEventLog(url) as second:
        await first.ensure_topic("t", 1)
        async with first.reader({tp: 0}) as reader:
            assert await reader.poll() == []
            for i in range(20):  # each log's appends leave a gap in the other's view
                writer = first if i % 2 == 0 else second
                await writer.append([Message("t", b"%d" % i)])
            got: list[Record] = []
            for _ in range(100):
                got += await reader.poll(timeout=0.1)
                if len(got) >= 20:
                    break
    assert [r.offset for r in got] == list(range(20))
    assert [r.value for r in got] == [b"%d" % i for i in range(20)]


def test_a_partitions_window_stays_bounded() -> None:
    recent = RecentRecords(max_records=100, max_bytes=10_000)
    tp = TopicPartition("t", 0)
    recent.written(((tp, offset, Message("t", b"x" * 50)) for offset in range(1000)), 0)
    known = recent.fetch([(tp, 990)], 100)
    assert known is not None
    records, ends = known
    assert [r.offset for r in records] == list(range(990, 1000)) and ends == {tp: 1000}
    assert recent.fetch([(tp, 0)], 100) is None  # long dropped: the file is asked
    window = recent._windows[tp]
    assert len(window.records) <= 100 and window.size <= 10_000
