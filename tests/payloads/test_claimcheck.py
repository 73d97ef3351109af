"""Claim checks over every blob store: large values by reference, checked when read back."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from deerflow.errors import PayloadTooLarge, PayloadUnreadable
from deerflow.log import open_log
from deerflow.log.base import Message, TopicPartition
from deerflow.payloads import (
    BlobStore,
    ClaimCheck,
    LocalBlobStore,
    MemoryBlobStore,
    PayloadLog,
    S3BlobStore,
    blob_prefix,
    lost_fields,
    open_blob_store,
    payload_error,
    reference,
)
from tests.payloads.stores import s3_store

BIG = b"{" + b"7" * 600_000 + b"}"


@pytest.fixture(params=["memory", "local", pytest.param("s3", marks=pytest.mark.s3)])
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    """A fresh blob store of each kind (S3 on moto_server)."""
    if request.param == "memory":
        return MemoryBlobStore()
    if request.param == "local":
        return LocalBlobStore(tmp_path / "blobs")
    return s3_store(request)


@pytest.fixture
async def log(tmp_path: Path, blobs: BlobStore) -> AsyncIterator[PayloadLog]:
    """A SQLite log behind a claim check of 1 kB into ``blobs``."""
    async with PayloadLog(
        open_log(f"sqlite:///{tmp_path / 'events.db'}"), ClaimCheck(blobs, 1024), limit=2_000_000
    ) as payload_log:
        yield payload_log


async def read_all(log: Any, topic: str) -> list[bytes]:
    records = await log.read_partition(TopicPartition(topic, 0))
    return [r.value for r in records]


async def test_a_large_value_is_stored_by_reference_and_read_back_whole(log, blobs):
    await log.append(
        [
            Message("t", b'{"small":1}', key="run-1", partition=0),
            Message("t", BIG, key="run-1", partition=0),
        ]
    )
    assert await read_all(log, "t") == [b'{"small":1}', BIG]
    raw = await log.inner.read_partition(TopicPartition("t", 0))
    assert raw[0].value == b'{"small":1}' and reference(raw[0]) is None
    ref = reference(raw[1])
    assert ref is not None and len(raw[1].value) < 300
    assert (ref.store, ref.size, ref.sha256) == (
        blobs.url,
        len(BIG),
        hashlib.sha256(BIG).hexdigest(),
    )
    assert ref.key.startswith("t/run-1/")
    assert await blobs.get(ref.key) == BIG


async def test_a_corrupt_blob_is_a_clear_error_naming_the_record_and_key(log, blobs):
    await log.append(
        [
            Message("t", b"{}", key="a", partition=0),
            Message("t", BIG, key="run-9/load", partition=0),
        ]
    )
    ref = reference((await log.inner.read_partition(TopicPartition("t", 0)))[1])
    assert ref is not None
    await blobs.put(ref.key, BIG.replace(b"7", b"8", 1))
    first, second = await log.read_partition(TopicPartition("t", 0))
    assert first.value == b"{}" and payload_error(first) is None
    error = payload_error(second)
    assert error is not None
    assert orjson.loads(second.value) == {"payload_error": error, "known": {}}  # not data
    assert "'run-9/load'" in error and ref.key in error and "sha256" in error


async def test_a_missing_blob_is_a_clear_error_naming_the_record_and_key(log, blobs):
    value = orjson.dumps({"run_id": "run-3", "attempt": 2, "ok": True, "rows": ["r" * 900] * 9})
    await log.append([Message("t", value, key="run-3", partition=0)])
    ref = reference((await log.inner.read_partition(TopicPartition("t", 0)))[0])
    assert ref is not None
    await blobs.delete(ref.key)
    [record] = await log.read_partition(TopicPartition("t", 0))
    error = payload_error(record) or ""
    assert "key 'run-3'" in error and f"blob {ref.key!r} is missing from {blobs.url}" in error
    assert lost_fields(record) == {"run_id": "run-3", "attempt": 2, "ok": True}


async def test_a_blob_that_cannot_be_read_for_now_holds_the_reader_back_until_it_can(tmp_path):
    blobs = LocalBlobStore(tmp_path / "blobs")
    inner = open_log(f"sqlite:///{tmp_path / 'events.db'}")
    async with PayloadLog(inner, ClaimCheck(blobs, 1024)) as log:
        await log.append(
            [Message("t", b"{}", partition=0), Message("t", BIG, key="r", partition=0)]
        )
        ref = reference((await inner.read_partition(TopicPartition("t", 0)))[1])
        assert ref is not None
        path = tmp_path / "blobs" / ref.key
        path.rename(tmp_path / "aside")
        path.mkdir()  # reading it fails with an OSError, as an unreachable store does
        tp = TopicPartition("t", 0)
        async with log.reader({tp: 0}) as reader:
            assert [r.value for r in await reader.poll(timeout=1.0)] == [b"{}"]
            with pytest.raises(PayloadUnreadable, match=r"key 'r'.*cannot be read") as caught:
                await reader.poll(timeout=1.0)
            assert caught.value.retriable and reader.position(tp) == 1  # not skipped
            path.rmdir()
            (tmp_path / "aside").rename(path)
            assert [r.value for r in await reader.poll(timeout=1.0)] == [BIG]
            assert reader.position(tp) == 2


async def test_a_value_above_the_limit_is_refused_with_its_size(log):
    with pytest.raises(
        PayloadTooLarge,
        match=r"t record \(key 'run-4'\) of 2.0 MB is more than the 2.0 MB a value may be even in",
    ):
        await log.append([Message("t", b"x" * 2_000_001, key="run-4", partition=0)])


async def test_a_group_member_decodes_and_appends_by_reference(log):
    await log.append([Message("in", BIG, key="k", partition=0)])
    async with log.consumer("g", ["in"]) as consumer:
        records = []
        for _ in range(50):
            records += await consumer.poll(timeout=0.2)
            if records:
                break
        assert [r.value for r in records] == [BIG]
        tp = TopicPartition("in", 0)
        await consumer.append_and_commit(log, [Message("out", BIG, key="k", partition=0)], {tp: 1})
        assert await consumer.committed(tp) == 1
    raw = await log.inner.read_partition(TopicPartition("out", 0))
    assert reference(raw[0]) is not None
    assert await read_all(log, "out") == [BIG]


async def test_a_record_appended_while_a_poll_waits_across_a_seek_is_delivered(tmp_path):
    """A poll already waiting when the member seeks (as a new owner does once it has loaded a
    partition) still returns what is appended next: nothing fetched is dropped on the way."""
    inner = open_log(f"sqlite:///{tmp_path / 'events.db'}")
    async with PayloadLog(inner, ClaimCheck(MemoryBlobStore(), 1024)) as log:
        await log.append([Message("in", b"0", key="k", partition=0)])
        async with log.consumer("g", ["in"]) as consumer:
            tp = TopicPartition("in", 0)
            consumer.pause(frozenset({tp}))
            waiting = asyncio.create_task(consumer.poll(timeout=5.0))
            await asyncio.sleep(0.2)  # the poll waits; the partition is paused
            await consumer.seek(tp, 1)  # past what was "loaded" (offset 0)
            consumer.resume(frozenset({tp}))
            await log.append([Message("in", b"1", key="k", partition=0)])
            records = await asyncio.wait_for(waiting, 5.0)
            for _ in range(10):  # had the waiting poll dropped it, a later one would not see it
                if records:
                    break
                records = await consumer.poll(timeout=0.2)
            assert [(r.offset, r.value) for r in records] == [(1, b"1")]


def test_blob_store_urls_name_their_kind(tmp_path):
    assert isinstance(open_blob_store(f"file://{tmp_path}"), LocalBlobStore)
    s3 = open_blob_store("s3://bucket/some/prefix")
    assert isinstance(s3, S3BlobStore) and s3.url == "s3://bucket/some/prefix"
    assert isinstance(open_blob_store("memory://"), MemoryBlobStore)
    with pytest.raises(Exception, match="unknown blob store URL 'ftp://x'"):
        open_blob_store("ftp://x")


def test_a_blob_key_cannot_leave_its_directory(tmp_path):
    store = LocalBlobStore(tmp_path)
    with pytest.raises(ValueError, match="not a safe path"):
        store._path("../etc/passwd")


async def test_one_poll_resolves_a_bounded_number_of_bytes_and_keeps_the_rest_in_order(
    log, monkeypatch
):
    monkeypatch.setattr("deerflow.payloads._log.POLL_BYTES", len(BIG) + 1)
    values = [BIG, BIG.replace(b"7", b"6"), b"{}", BIG.replace(b"7", b"5")]
    await log.append([Message("t", value, key="k", partition=0) for value in values])
    tp = TopicPartition("t", 0)
    async with log.reader({tp: 0}) as reader:
        batches = [[r.value for r in await reader.poll(timeout=1.0)] for _ in range(3)]
        assert reader.position(tp) == 4 and reader.lag(tp) == 0
    assert batches == [values[:2], values[2:], []]


def test_each_record_key_has_a_blob_directory_of_its_own() -> None:
    keys = ["a", "a/b", "a_b", "a_2fb", "..", ".x", "", "é", "x" * 300, "x" * 301]
    prefixes = [blob_prefix("deerflow.history", key) for key in keys]
    assert len(set(prefixes)) == len(keys)  # one to one: no run shares another's directory
    assert prefixes[:3] == [
        "deerflow.history/a/",
        "deerflow.history/a_2fb/",
        "deerflow.history/a_5fb/",
    ]
    assert all(p.count("/") == 2 and len(p) < 300 for p in prefixes)  # one segment each
    for prefix in prefixes:
        assert not any(other.startswith(prefix) for other in prefixes if other != prefix)


async def test_deleting_a_directory_takes_its_blobs_and_no_neighbours(blobs: BlobStore) -> None:
    for key in ("t/run-1/a", "t/run-1/b", "t/run-10/a", "u/run-1/a"):
        await blobs.put(key, b"v")
    assert await blobs.delete_prefix("t/run-1/") == 2
    assert await blobs.delete_prefix("t/run-1/") == 0  # idempotent
    assert await blobs.get("t/run-10/a") == b"v" and await blobs.get("u/run-1/a") == b"v"
    with pytest.raises(PayloadUnreadable, match="missing"):
        await blobs.get("t/run-1/a")
    with pytest.raises(ValueError, match="not a directory"):
        await blobs.delete_prefix("t/run-1")
