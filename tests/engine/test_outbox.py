"""The orchestrator's outbox: decided messages appended in order, grouped while one is in flight.

What a user relies on: a run's decisions reach the log in the order they were decided
(dispatches before the history that records them), a run's end counts as durable only once
its append succeeded, and after an append that may or may not have been written nothing
counts as durable until the owner has read its partitions again.
"""

from __future__ import annotations

import asyncio

import pytest

from deerflow.errors import EventStoreError
from deerflow.log import open_log
from deerflow.log._sqlitefile import SqliteFile, WriteRequest
from deerflow.log.base import Message, TopicPartition
from deerflow.runtime._outbox import Outbox
from tests.reliability.faults import FaultyLog


def message(n: int) -> Message:
    return Message("decided", str(n).encode(), key="run")


async def written(log: FaultyLog) -> list[int]:
    read = await log.inner.read_partitions({TopicPartition("decided", 0): 0})
    return [int(r.value) for records in read.values() for r in records]


@pytest.fixture
async def log():
    faulty = FaultyLog(open_log("memory://"), delay=0.05)
    await faulty.start()
    await faulty.ensure_topic("decided", 1)
    yield faulty
    await faulty.stop()


async def test_decisions_made_during_an_append_go_out_together_in_decided_order(log):
    durable: list[int] = []
    outbox = Outbox(log, durable.append)
    outbox.submit([], [message(1)])
    await asyncio.sleep(0)  # the first append is in flight now
    outbox.submit([message(2)], [message(3)])
    outbox.submit([], [message(4)])
    assert outbox.backlog == 3
    await outbox.drain()
    assert await written(log) == [1, 2, 3, 4]
    assert log.appends == 3  # [1], then the group: its dispatch [2], its history [3, 4]
    assert durable == [1, 3] and outbox.appended == 3 and outbox.backlog == 0


async def test_a_submission_without_messages_is_durable_once_nothing_waits(log):
    durable: list[int] = []
    outbox = Outbox(log, durable.append)
    assert outbox.submit([], []) == 1
    assert outbox.idle and outbox.appended == 0
    outbox.settle()
    assert outbox.appended == 1 and durable == [1]


async def test_after_an_ambiguous_append_nothing_counts_as_durable_until_trusted_again(log):
    durable: list[int] = []
    outbox = Outbox(log, durable.append)
    log.ambiguous = 1.0  # written, but the append raises
    outbox.submit([], [message(1)])
    with pytest.raises(EventStoreError, match="ambiguous"):
        await outbox.drain()
    assert outbox.untrusted and outbox.appended == 0
    log.ambiguous = 0.0
    outbox.submit([], [message(2)])
    await outbox.drain()
    outbox.settle()
    assert await written(log) == [1, 2]
    assert outbox.appended == 0 and durable == []  # the states may hold what the log does not
    outbox.trust()  # the owner read its partitions again
    outbox.submit([], [message(3)])
    await outbox.drain()
    assert outbox.appended == 3 and durable == [3]


async def test_on_a_log_whose_appends_are_atomic_a_group_is_one_transaction(tmp_path, monkeypatch):
    transactions: list[list[bytes]] = []
    real_write = SqliteFile.write

    def counting_write(self: SqliteFile, requests: list[WriteRequest]) -> object:
        transactions.append([m.value for r in requests for _, m in r.placed])
        return real_write(self, requests)

    monkeypatch.setattr(SqliteFile, "write", counting_write)
    async with open_log(f"sqlite:///{tmp_path / 'log.db'}") as sqlite_log:
        await sqlite_log.ensure_topic("decided", 1)
        durable: list[int] = []
        outbox = Outbox(sqlite_log, durable.append)
        outbox.submit([message(1), message(2)], [message(3), message(4)])
        await outbox.drain()
        read = await sqlite_log.read_partitions({TopicPartition("decided", 0): 0})
    # dispatches and the history recording them: durable together, or (on a crash) neither
    assert transactions == [[b"1", b"2", b"3", b"4"]]
    assert [int(r.value) for records in read.values() for r in records] == [1, 2, 3, 4]
    assert durable == [1]
