"""One contract, three event logs: memory, SQLite and Kafka behave the same through the interface.

Backend-specific promises (SQLite durability, cross-process use and leases, Kafka connection
errors, named memory logs) follow the shared contract at the end of the file.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from deerflow.errors import EventStoreError
from deerflow.eventstore import (
    EventLog,
    GroupConsumer,
    LogReader,
    MemoryEventLog,
    Message,
    Record,
    SqliteEventLog,
    TopicPartition,
    murmur2,
    open_log,
    partition_for,
)
from deerflow.log._sqlitefile import SqliteFile
from tests.services import kafka_broker, real_kafka_only, unique_name

REPO = Path(__file__).resolve().parents[2]


async def wait_for(
    condition: Callable[[], bool], *, polling: Sequence[LogReader] = (), within: float = 15.0
) -> list[Record]:
    """Poll ``polling`` until ``condition()`` holds; return what the polls delivered."""
    delivered: list[Record] = []
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        if not polling:
            await asyncio.sleep(0.05)
        for reader in polling:
            delivered.extend(await reader.poll(timeout=0.05))
    return delivered


async def collect(readers: Sequence[LogReader], count: int, within: float = 15.0) -> list[Record]:
    """At least ``count`` records from ``readers`` (fails after ``within`` s)."""
    got: list[Record] = []
    deadline = time.monotonic() + within
    while len(got) < count:
        assert time.monotonic() < deadline, f"{len(got)} of {count} records in {within} s"
        for reader in readers:
            got.extend(await reader.poll(timeout=0.05))
    return got


async def assigned(consumer: GroupConsumer, tps: frozenset[TopicPartition]) -> list[Record]:
    """Poll until ``consumer`` holds ``tps`` and knows where it reads each of them from."""

    def ready() -> bool:
        if consumer.assignment() != tps:
            return False
        try:
            return all(consumer.position(tp) >= 0 for tp in tps)
        except EventStoreError:
            return False

    return await wait_for(ready, polling=[consumer])


def partitions(topic: str, count: int) -> frozenset[TopicPartition]:
    return frozenset(TopicPartition(topic, p) for p in range(count))


def where(records: Sequence[Record]) -> list[tuple[int, int]]:
    return sorted((r.partition, r.offset) for r in records)


# --- appending and reading ------------------------------------------------------------------


async def test_append_returns_positions_in_order_and_reads_back_what_was_written(
    event_log: EventLog, topic: str
) -> None:
    assert await event_log.ensure_topic(topic, 1) == 1
    tp = TopicPartition(topic, 0)
    messages = [
        Message(topic, f"value {i}".encode(), key=f"key-{i}", headers=(("n", bytes([i])),))
        for i in range(5)
    ]
    messages.append(Message(topic, b"", headers=(("a", b""), ("b", b"\x00\xff"))))

    positions = await event_log.append(messages)
    assert positions == [(tp, offset) for offset in range(6)]
    assert await event_log.append([Message(topic, b"next")]) == [(tp, 6)]

    records = await event_log.read_partition(tp)
    assert [(r.offset, r.key, r.value, r.headers) for r in records] == [
        *[(i, m.key, m.value, m.headers) for i, m in enumerate(messages)],
        (6, None, b"next", ()),
    ]
    assert all(r.tp == tp and r.timestamp_ms > 1_600_000_000_000 for r in records)


async def test_one_key_lands_in_one_partition_in_order(event_log: EventLog, topic: str) -> None:
    await event_log.ensure_topic(topic, 4)
    messages = [Message(topic, str(i).encode(), key=f"run-{i % 3}") for i in range(30)]

    positions = await event_log.append(messages)

    for key in ("run-0", "run-1", "run-2"):
        mine = [(tp, off) for (tp, off), m in zip(positions, messages, strict=True) if m.key == key]
        assert {tp for tp, _ in mine} == {TopicPartition(topic, partition_for(key, 4))}
        tp = mine[0][0]
        stored = [r for r in await event_log.read_partition(tp) if r.key == key]
        assert [r.value for r in stored] == [m.value for m in messages if m.key == key]
        assert [r.offset for r in stored] == [off for _, off in mine]


def test_partition_for_agrees_with_kafka_murmur2() -> None:
    # Vectors from Apache Kafka's UtilsTest.testMurmur2 (signed Java ints).
    java = {
        b"21": -973932308,
        b"foobar": -790332482,
        b"a-little-bit-long-string": -985981536,
        b"a-little-bit-longer-string": -1486304829,
        b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
        b"abc": 479470107,
    }
    for data, expected in java.items():
        assert murmur2(data) == expected & 0xFFFFFFFF, data
    assert partition_for(None, 8) == 0
    assert partition_for("anything", 1) == 0

    partitioner = pytest.importorskip("aiokafka.partitioner").DefaultPartitioner()
    for key in ["foo", "run-1", "ünïcode", "", *(f"key-{i}" for i in range(200))]:
        for count in (2, 3, 4, 12):
            expected = partitioner(key.encode(), list(range(count)), list(range(count)))
            assert partition_for(key, count) == expected, (key, count)


async def test_a_reader_starts_at_its_offset_and_its_lag_reaches_zero(
    event_log: EventLog, topic: str
) -> None:
    await event_log.ensure_topic(topic, 1)
    tp = TopicPartition(topic, 0)
    await event_log.append([Message(topic, str(i).encode()) for i in range(10)])

    async with event_log.reader({tp: 4}) as reader:
        assert reader.position(tp) == 4
        got = await collect([reader], 6)
        assert [r.offset for r in got] == [4, 5, 6, 7, 8, 9]
        assert await reader.poll(timeout=0.2) == []
        assert reader.lag(tp) == 0
        assert reader.position(tp) == 10

        await event_log.append([Message(topic, b"later")])
        later = await collect([reader], 1)
        assert [(r.offset, r.value) for r in later] == [(10, b"later")]


async def test_read_partition_returns_every_record_of_a_batched_append(
    event_log: EventLog, topic: str
) -> None:
    # One append = one produce batch on Kafka: the case where Tansu's ListOffsets comes up short.
    await event_log.ensure_topic(topic, 4)
    tp = TopicPartition(topic, 2)
    await event_log.append([Message(topic, b"%d" % i, partition=2) for i in range(50)])

    records = await event_log.read_partition(tp)
    assert [r.offset for r in records] == list(range(50))
    assert [r.value for r in records] == [b"%d" % i for i in range(50)]
    assert [r.offset for r in await event_log.read_partition(tp, 45)] == [45, 46, 47, 48, 49]


async def test_ensure_topic_returns_the_count_and_an_existing_topic_keeps_its_own(
    event_log: EventLog, topic: str
) -> None:
    assert await event_log.ensure_topic(topic, 3) == 3
    assert await event_log.ensure_topic(topic, 5) == 3
    assert await event_log.partition_count(topic) == 3
    implicit = unique_name("implicit")
    assert await event_log.partition_count(implicit) == 4  # every backend's default
    assert await event_log.ensure_topic(implicit, 9) == 4


async def test_a_compacted_topic_keeps_each_keys_newest_record_at_its_own_offset(
    event_log: EventLog, event_log_url: str, topic: str
) -> None:
    on_kafka = event_log_url.startswith("kafka")
    if on_kafka:
        real_kafka_only("has no log compaction")
    await event_log.ensure_topic(topic, 1, compact=True)
    tp = TopicPartition(topic, 0)
    appended: dict[int, tuple[str | None, bytes]] = {}
    for version in range(3):
        batch = [Message(topic, b"%s-v%d" % (k.encode(), version), key=k) for k in "ab"]
        for (_, offset), message in zip(await event_log.append(batch), batch, strict=True):
            appended[offset] = (message.key, message.value)
    # Two versions of one key in one append: the later one wins.
    twice = [Message(topic, b"c-v0", key="c"), Message(topic, b"c-v1", key="c")]
    for (_, offset), message in zip(await event_log.append(twice), twice, strict=True):
        appended[offset] = (message.key, message.value)
    assert sorted(appended) == list(range(8))  # offsets are assigned as on any topic
    newest = {"a": (4, b"a-v2"), "b": (5, b"b-v2"), "c": (7, b"c-v1")}

    records = await event_log.read_partition(tp)
    # What Kafka guarantees: each record read sits at its own offset, in order, and every
    # key's newest record is there (its cleaner removes older ones some time later).
    assert all(appended[r.offset] == (r.key, r.value) for r in records)
    assert [r.offset for r in records] == sorted({r.offset for r in records})
    assert {r.key: (r.offset, r.value) for r in records} == newest
    if not on_kafka:  # the local logs compact on append
        assert [r.offset for r in records] == [4, 5, 7]

    # A reader at an offset whose record may be gone gets the next one kept, and catches up.
    async with event_log.reader({tp: 1}) as reader:
        got = await collect([reader], 1 if on_kafka else 3)
        got += await wait_for(lambda: reader.lag(tp) == 0, polling=[reader])
        assert got[0].offset >= 1 and got[-1].offset == 7
        assert reader.position(tp) == 8
    assert await event_log.append([Message(topic, b"a-v3", key="a")]) == [(tp, 8)]
    if not on_kafka:
        assert [r.offset for r in await event_log.read_partition(tp)] == [5, 7, 8]


async def test_a_partition_that_does_not_exist_is_refused(event_log: EventLog, topic: str) -> None:
    await event_log.ensure_topic(topic, 2)
    with pytest.raises(EventStoreError, match="partitions"):
        await event_log.append([Message(topic, b"x", partition=2)])
    assert await event_log.read_partition(TopicPartition(topic, 0)) == []


async def test_a_record_the_broker_cannot_take_fails_the_append_for_good(
    event_log_url: str, event_log: EventLog, topic: str
) -> None:
    """Over the producer's request limit: not retriable, and the append does not return."""
    if not event_log_url.startswith("kafka"):
        pytest.skip("the local logs have no request limit")
    await event_log.ensure_topic(topic, 1)
    with pytest.raises(EventStoreError, match="cannot append to Kafka") as failed:
        await event_log.append([Message(topic, b"x" * 2_000_000, key="k")])
    assert failed.value.retriable is False
    assert await event_log.read_partition(TopicPartition(topic, 0)) == []


async def test_stop_is_idempotent_and_safe_before_start(event_log_url: str, topic: str) -> None:
    never_started = open_log(event_log_url)
    await never_started.stop()
    await never_started.stop()

    log = open_log(event_log_url)
    async with log:
        tp = TopicPartition(topic, 0)
        await log.ensure_topic(topic, 1)
        await log.reader({tp: 0}).stop()
        await log.consumer(unique_name("group"), [topic]).stop()
        reader = log.reader({tp: 0})
        await reader.start()
        await reader.stop()
        await reader.stop()
    await log.stop()


# --- consumer groups ------------------------------------------------------------------------


async def test_a_member_gets_every_record_once_and_a_successor_resumes_after_the_commit(
    event_log: EventLog, topic: str, group: str
) -> None:
    await event_log.ensure_topic(topic, 2)
    positions = await event_log.append([Message(topic, b"%d" % i, key=f"k{i}") for i in range(20)])
    ends = {tp: off + 1 for tp, off in sorted(positions)}
    assert len(ends) == 2

    async with event_log.consumer(group, [topic]) as first:
        got = await collect([first], 20)
        assert where(got) == sorted((tp.partition, off) for tp, off in positions)
        assert await first.poll(timeout=0.3) == []
        halfway = {tp: end // 2 for tp, end in ends.items()}
        await first.commit(halfway)
        for tp, offset in halfway.items():
            assert await first.committed(tp) == offset

    async with event_log.consumer(group, [topic]) as successor:
        expected = [(tp.partition, off) for tp, end in ends.items() for off in range(end // 2, end)]
        again = await collect([successor], len(expected))
        assert where(again) == sorted(expected)


async def test_two_members_split_the_partitions_and_together_see_every_record_once(
    event_log: EventLog, topic: str, group: str
) -> None:
    every = partitions(topic, await event_log.ensure_topic(topic, 4))
    events: list[tuple[str, str, frozenset[TopicPartition]]] = []

    class Recorder:
        def __init__(self, name: str) -> None:
            self.name = name

        async def on_assigned(self, tps: frozenset[TopicPartition]) -> None:
            events.append((self.name, "assigned", tps))

        async def on_revoked(self, tps: frozenset[TopicPartition]) -> None:
            events.append((self.name, "revoked", tps))

    a = event_log.consumer(group, [topic], listener=Recorder("a"))
    b = event_log.consumer(group, [topic], listener=Recorder("b"))
    await a.start()
    await assigned(a, every)
    await b.start()

    def split() -> bool:
        held_a, held_b = a.assignment(), b.assignment()
        return bool(held_a) and bool(held_b) and held_a | held_b == every and not held_a & held_b

    await wait_for(split, polling=[a, b])
    # Revoke before assign: a gave b's partitions up before b was told it has them.
    b_assigned = max(i for i, e in enumerate(events) if e[:2] == ("b", "assigned"))
    assert events[b_assigned][2] == b.assignment()
    assert any(e[:2] == ("a", "revoked") and b.assignment() <= e[2] for e in events[:b_assigned])

    positions = await event_log.append([Message(topic, b"%d" % i, key=f"k{i}") for i in range(40)])
    got_a: list[Record] = []
    got_b: list[Record] = []

    def complete() -> bool:
        return len(got_a) + len(got_b) >= 40

    while not complete():
        got_a.extend(await a.poll(timeout=0.05))
        got_b.extend(await b.poll(timeout=0.05))
    assert all(r.tp in a.assignment() for r in got_a)
    assert all(r.tp in b.assignment() for r in got_b)
    assert where(got_a + got_b) == sorted((tp.partition, off) for tp, off in positions)

    held_by_b = b.assignment()
    await b.stop()
    assert ("b", "revoked", held_by_b) in events
    await wait_for(lambda: a.assignment() == every, polling=[a])
    await a.stop()


async def test_a_member_left_without_partitions_is_told_its_share_is_empty(
    event_log: EventLog, topic: str, group: str
) -> None:
    # An orchestrator that gets no partition must still learn so (it waits for its share
    # before deciding who answers a wait), on every store.
    every = partitions(topic, await event_log.ensure_topic(topic, 1))
    told: dict[str, list[frozenset[TopicPartition]]] = {"first": [], "second": []}

    class Recorder:
        def __init__(self, name: str) -> None:
            self.name = name

        async def on_assigned(self, tps: frozenset[TopicPartition]) -> None:
            told[self.name].append(tps)

        async def on_revoked(self, tps: frozenset[TopicPartition]) -> None:
            pass

    async with event_log.consumer(group, [topic], listener=Recorder("first")) as first:
        await assigned(first, every)
        async with event_log.consumer(group, [topic], listener=Recorder("second")) as second:
            members = {"first": first, "second": second}

            seen: list[object] = []

            def settled() -> bool:
                held = [m.assignment() for m in members.values()]
                agreed = (
                    bool(told["second"])
                    and held[0] | held[1] == every
                    and all(
                        told[name] and told[name][-1] == m.assignment()
                        for name, m in members.items()
                    )
                )
                # The same shares on two checks in a row: on a broker that rebalances within
                # milliseconds, the new member may be told its share before the old one has
                # heard of the rebalance, and for that moment both hold the partition.
                now = (held, [len(told[name]) for name in members]) if agreed else None
                stable = now is not None and seen[-1:] == [now]
                seen.append(now)
                return stable

            await wait_for(settled, polling=[first, second])
            assert sorted(len(told[name][-1]) for name in members) == [0, 1]


async def test_a_new_group_starting_from_latest_skips_old_records(
    event_log: EventLog, topic: str, group: str
) -> None:
    await event_log.ensure_topic(topic, 1)
    tp = TopicPartition(topic, 0)
    await event_log.append([Message(topic, b"old %d" % i) for i in range(3)])  # one batch

    async with event_log.consumer(group, [topic], start_from="latest") as consumer:
        old = await assigned(consumer, frozenset({tp}))
        assert old == []
        assert consumer.position(tp) == 3
        await event_log.append([Message(topic, b"new 1"), Message(topic, b"new 2")])
        got = await collect([consumer], 2)
        assert [(r.offset, r.value) for r in got] == [(3, b"new 1"), (4, b"new 2")]


async def test_pause_stops_delivery_and_resume_restarts_it(
    event_log: EventLog, topic: str, group: str
) -> None:
    await event_log.ensure_topic(topic, 1)
    tp = TopicPartition(topic, 0)
    async with event_log.consumer(group, [topic]) as consumer:
        await assigned(consumer, frozenset({tp}))
        consumer.pause(frozenset({tp}))
        await event_log.append([Message(topic, b"held back")])
        assert await consumer.poll(timeout=0.5) == []

        consumer.resume(frozenset({tp}))
        got = await collect([consumer], 1)
        assert [r.value for r in got] == [b"held back"]


async def test_seek_makes_the_next_poll_start_there(
    event_log: EventLog, topic: str, group: str
) -> None:
    await event_log.ensure_topic(topic, 1)
    tp = TopicPartition(topic, 0)
    await event_log.append([Message(topic, b"%d" % i) for i in range(5)])
    async with event_log.consumer(group, [topic]) as consumer:
        first = await assigned(consumer, frozenset({tp}))
        first += await collect([consumer], 5 - len(first))
        await consumer.seek(tp, 2)
        again = await collect([consumer], 3)
        assert [r.offset for r in again] == [2, 3, 4]


async def test_append_and_commit_appends_the_output_and_commits_the_input(
    event_log: EventLog, topic: str, group: str
) -> None:
    output = unique_name("output")
    await event_log.ensure_topic(topic, 1)
    await event_log.ensure_topic(output, 1)
    tp_in = TopicPartition(topic, 0)
    await event_log.append([Message(topic, b"%d" % i) for i in range(3)])

    async with event_log.consumer(group, [topic]) as consumer:
        await collect([consumer], 3)
        await consumer.append_and_commit(event_log, [Message(output, b"done", key="k")], {tp_in: 3})
        assert await consumer.committed(tp_in) == 3
        with pytest.raises(EventStoreError):
            await consumer.commit({TopicPartition(output, 0): 1})  # not this member's partition

    records = await event_log.read_partition(TopicPartition(output, 0))
    assert [(r.key, r.value) for r in records] == [("k", b"done")]


async def test_a_bookkeeping_group_commits_without_members_and_its_offsets_read_back(
    event_log: EventLog, topic: str, group: str
) -> None:
    await event_log.ensure_topic(topic, 2, compact=True)
    tp0, tp1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
    assert await event_log.group_offsets(group, [tp0, tp1]) == {tp0: None, tp1: None}
    await event_log.commit_group(group, {tp1: 7})
    assert await event_log.group_offsets(group, [tp0, tp1]) == {tp0: None, tp1: 7}
    await event_log.commit_group(group, {tp1: 9, tp0: 3})
    assert await event_log.group_offsets(group, [tp0, tp1]) == {tp0: 3, tp1: 9}


# --- SQLite ---------------------------------------------------------------------------------


async def test_sqlite_records_and_commits_survive_reopening(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'deep' / 'log.db'}"
    tp = TopicPartition("t", 0)
    async with open_log(url) as log:
        await log.ensure_topic("t", 1)
        await log.append(
            [Message("t", b"%d" % i, key="k", headers=(("h", b"v"),)) for i in range(10)]
        )
        async with log.consumer("g", ["t"]) as consumer:
            await collect([consumer], 10)
            await consumer.commit({tp: 6})

    async with open_log(url) as reopened:
        records = await reopened.read_partition(tp)
        assert [(r.offset, r.value, r.key, r.headers) for r in records] == [
            (i, b"%d" % i, "k", (("h", b"v"),)) for i in range(10)
        ]
        async with reopened.consumer("g", ["t"]) as consumer:
            assert await consumer.committed(tp) == 6
            rest = await collect([consumer], 4)
            assert [r.offset for r in rest] == [6, 7, 8, 9]


async def test_sqlite_a_topic_made_compacted_later_is_compacted_and_stays_so_when_reopened(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    tp = TopicPartition("t", 0)
    async with open_log(url) as log:
        await log.ensure_topic("t", 1)  # a topic of a store from before compaction
        await log.append([Message("t", b"%d" % i, key=f"k{i % 2}") for i in range(6)])
        await log.append([Message("t", b"no key")])
        await log.ensure_topic("t", 1, compact=True)
        records = await log.read_partition(tp)
        assert [(r.offset, r.key, r.value) for r in records] == [
            (4, "k0", b"4"), (5, "k1", b"5"), (6, None, b"no key"),
        ]  # fmt: skip

    # The file remembers: a process that never ensures the topic compacts it too.
    async with open_log(url) as reopened:
        assert await reopened.append([Message("t", b"7", key="k1")]) == [(tp, 7)]
        records = await reopened.read_partition(tp)
        assert [(r.offset, r.key) for r in records] == [(4, "k0"), (6, None), (7, "k1")]
        async with reopened.consumer("g", ["t"]) as consumer:
            assert [r.offset for r in await collect([consumer], 3)] == [4, 6, 7]


async def test_sqlite_concurrent_appends_share_transactions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    transactions = 0
    real_write = SqliteFile.write

    def counting_write(self: SqliteFile, requests: Sequence[object]) -> object:
        nonlocal transactions
        transactions += 1
        return real_write(self, requests)  # type: ignore[arg-type]

    monkeypatch.setattr(SqliteFile, "write", counting_write)
    async with SqliteEventLog(f"sqlite:///{tmp_path / 'log.db'}") as log:
        await log.ensure_topic("t", 1)
        results = await asyncio.gather(*(log.append([Message("t", b"x")]) for _ in range(200)))
    assert sorted(off for [(_, off)] in results) == list(range(200))
    assert transactions <= 5


CHILD_APPENDER = """
import asyncio, sys
from deerflow.eventstore import Message, open_log

async def main(url, topic, count):
    async with open_log(url) as log:
        print("ready", flush=True)
        for start in range(0, count, 10):
            await asyncio.gather(*(
                log.append([Message(topic, b"child %d" % i, key="k%d" % (i % 7))])
                for i in range(start, start + 10)
            ))

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


async def test_sqlite_two_processes_appending_get_unique_contiguous_offsets(
    tmp_path: Path, topic: str
) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    async with open_log(url) as log:
        await log.ensure_topic(topic, 3)
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CHILD_APPENDER, url, topic, "300",
            stdout=subprocess.PIPE, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        )  # fmt: skip
        assert child.stdout is not None
        assert await asyncio.wait_for(child.stdout.readline(), 30) == b"ready\n"
        mine = 0
        while child.returncode is None or mine < 300:
            batch = [Message(topic, b"parent %d" % (mine + i), key=f"k{i}") for i in range(5)]
            await log.append(batch)
            mine += 5
            await asyncio.sleep(0)
            if child.stdout.at_eof():
                await child.wait()
        assert child.returncode == 0

        values: list[bytes] = []
        for tp in partitions(topic, 3):
            records = await log.read_partition(tp)
            assert [r.offset for r in records] == list(range(len(records)))
            values += [r.value for r in records]
    assert sorted(values) == sorted(
        [b"child %d" % i for i in range(300)] + [b"parent %d" % i for i in range(mine)]
    )


async def test_sqlite_a_group_is_consumed_by_one_log_at_a_time(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    every = partitions("t", 2)
    async with open_log(url) as log1, open_log(url) as log2:
        await log1.ensure_topic("t", 2)
        await log1.append([Message("t", b"%d" % i, key=f"k{i}") for i in range(6)])
        holder = log1.consumer("g", ["t"])
        await holder.start()
        assert holder.assignment() == every
        waiting = log2.consumer("g", ["t"])
        await waiting.start()
        assert waiting.assignment() == frozenset()
        assert await waiting.poll(timeout=1.5) == []  # past a lease heartbeat: still idle

        await holder.stop()  # never committed: the next holder reads everything
        got = await wait_for(lambda: waiting.assignment() == every, polling=[waiting], within=5)
        got += await collect([waiting], 6 - len(got))
        assert len(where(got)) == 6


async def test_sqlite_a_lease_of_a_dead_process_is_taken_over_at_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    async with open_log(url) as log:
        await log.ensure_topic("t", 1)
    dead = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await dead.wait()
    with sqlite3.connect(tmp_path / "log.db") as db:
        db.execute(
            "INSERT INTO group_leases VALUES ('g', 'ghost', ?, ?, ?)",
            (os.uname().nodename, dead.pid, time.time() + 60),
        )
    async with open_log(url) as log, log.consumer("g", ["t"]) as consumer:
        assert consumer.assignment() == partitions("t", 1)


async def test_sqlite_a_member_whose_lease_was_taken_cannot_append_and_commit(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    tp = TopicPartition("in", 0)
    async with open_log(url) as log, log.consumer("g", ["in"]) as consumer:
        await log.ensure_topic("out", 1)
        await log.append([Message("in", b"work")])
        await collect([consumer], 1)
        with sqlite3.connect(tmp_path / "log.db") as db:
            db.execute(
                "UPDATE group_leases SET holder = 'thief', pid = ?, expires_at = ?",
                (os.getpid(), time.time() + 60),
            )

        with pytest.raises(EventStoreError, match="lease"):
            await consumer.append_and_commit(log, [Message("out", b"result")], {tp: 1})
        assert await log.read_partition(TopicPartition("out", 0)) == []
        assert await consumer.committed(tp) is None
        await wait_for(lambda: consumer.assignment() == frozenset(), polling=[consumer])


# --- memory, Kafka, URLs --------------------------------------------------------------------


async def test_memory_logs_opened_with_one_name_share_records() -> None:
    name = f"memory://{unique_name('shared')}"
    async with MemoryEventLog(name) as writer, MemoryEventLog(name) as reader:
        await writer.append([Message("t", b"hello")])
        assert [r.value for r in await reader.read_partition(TopicPartition("t", 0))] == [b"hello"]
    async with MemoryEventLog() as private:
        assert await private.read_partition(TopicPartition("t", 0)) == []


@pytest.mark.parametrize("client", ["aiokafka", "confluent"])
async def test_kafka_at_a_wrong_address_fails_fast_naming_it(client: str) -> None:
    pytest.importorskip("aiokafka")
    if client == "confluent":
        pytest.importorskip("confluent_kafka")
    log = open_log(f"kafka://127.0.0.1:1?client={client}", connect_timeout=5)
    started = time.monotonic()
    with pytest.raises(EventStoreError, match=r"cannot reach Kafka at kafka://127\.0\.0\.1:1"):
        await log.start()
    assert time.monotonic() - started < 5
    await log.stop()


_GONE_MEMBER = """
import asyncio, sys
from deerflow.eventstore import open_log

async def join():
    async with open_log(sys.argv[1], session_timeout_ms=int(sys.argv[2]),
                        heartbeat_interval_ms=300) as log:
        await log.consumer("held", ["held-topic"]).start()
        print("joined", flush=True)
        await asyncio.sleep(3600)

asyncio.run(join())
"""


@pytest.mark.kafka
async def test_a_group_join_held_by_a_gone_member_fails_in_time_naming_the_group(
    kafka_bootstrap: str,
) -> None:
    """A member killed without leaving holds the next join for its whole session; the new
    member's start gives up after its connect timeout plus two of its own sessions."""
    # A Kafka of default settings refuses sessions under 6 s; the suite's own brokers take 1 s.
    ours, theirs = (6000, 40_000) if kafka_broker() == "kafka" else (1000, 10_000)
    gone = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _GONE_MEMBER,
        f"kafka://{kafka_bootstrap}",
        str(theirs),
        stdout=subprocess.PIPE,
    )
    try:
        assert gone.stdout is not None and (await gone.stdout.readline()).strip() == b"joined"
    finally:
        gone.kill()
        await gone.wait()
    limit = 0.5 + 2 * ours / 1000
    async with open_log(
        f"kafka://{kafka_bootstrap}",
        connect_timeout=0.5,
        session_timeout_ms=ours,
        heartbeat_interval_ms=ours // 3,
    ) as log:
        started = time.monotonic()
        with pytest.raises(
            EventStoreError,
            match=r"consumer group 'held' assigned no "
            r"partitions .* session times out",
        ):
            await log.consumer("held", ["held-topic"]).start()
        # Not after the gone member's session: the stuck join is left to end on its own.
        assert time.monotonic() - started < limit + (theirs / 1000 - limit) / 2


def test_an_unknown_kafka_client_is_refused_naming_the_choices() -> None:
    pytest.importorskip("aiokafka")
    with pytest.raises(EventStoreError, match=r"unknown Kafka client 'rd'.*aiokafka or confluent"):
        open_log("kafka://127.0.0.1:1?client=rd")


def test_an_unknown_url_scheme_is_an_event_store_error_naming_the_url() -> None:
    with pytest.raises(EventStoreError, match="redis://x"):
        open_log("redis://x")
