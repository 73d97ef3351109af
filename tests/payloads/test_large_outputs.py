"""A 5 MB task output on SQLite and Kafka: kept in a blob store, referenced from the log."""

from __future__ import annotations

import hashlib

import pytest

from deerflow import Engine, Workflow
from deerflow.errors import PayloadUnreadable
from deerflow.payloads import LocalBlobStore, reference
from tests.payloads.kept import kept_records

FIVE_MB = 5 * 1024 * 1024


def big_chain() -> Workflow:
    wf = Workflow(name="big")

    @wf.task(id="produce")
    def produce(context):
        return {"blob": "x" * FIVE_MB, "n": context.params["n"]}

    @wf.task(id="consume", depends_on=["produce"])
    def consume(context):
        text = context.tasks["produce"].output["blob"]
        return {"size": len(text), "sha": hashlib.sha256(text.encode()).hexdigest()}

    @wf.task(id="echo", depends_on=["consume"])
    def echo(context):
        return {"blob": "y" * FIVE_MB, "seen": context.tasks["consume"].output["size"]}

    return wf


async def test_a_5mb_output_reaches_the_next_task_and_the_result_while_records_stay_small(
    store, tmp_path
):
    wf = big_chain()
    blobs = LocalBlobStore(tmp_path / "blobs")
    async with Engine(store, [wf], blobs=blobs, eager=False) as engine:
        handle = await engine.start(wf, params={"n": 7})
        result = await handle.result(timeout=120)
        assert result.status == "completed", result.error
        assert result.tasks["consume"].output == {
            "size": FIVE_MB,
            "sha": hashlib.sha256(b"x" * FIVE_MB).hexdigest(),
        }
        assert result.output == {"blob": "y" * FIVE_MB, "seen": FIVE_MB}
        assert result.tasks["produce"].output["n"] == 7
        records = await kept_records(engine, engine.topics.history, engine.topics.tasks)
    assert max(len(r.value) for r in records) < 256 * 1024
    refs = [ref for ref in map(reference, records) if ref is not None]
    assert refs and all(ref.size > FIVE_MB and len(ref.sha256) == 64 for ref in refs)
    assert all(ref.key.split("/")[1].startswith(handle.run_id) for ref in refs)


async def test_without_a_blob_store_a_5mb_output_on_kafka_fails_its_task_with_a_clear_error(
    kafka_url, monkeypatch
):
    monkeypatch.setenv("DEERFLOW_PREFIX", f"t{hashlib.sha256(kafka_url.encode()).hexdigest()[:6]}")
    wf = big_chain()
    async with Engine(kafka_url, [wf], blobs="none") as engine:
        handle = await engine.start(wf, params={"n": 1})
        result = await handle.result(timeout=60)
    assert result.status == "failed"
    error = result.tasks["produce"].error or ""
    assert "task 'produce'" in error and handle.run_id in error and "5.2 MB" in error
    assert "blob store" in error
    assert result.tasks["produce"].attempts == 1  # not retried: it would fail the same way


async def test_a_deleted_blob_is_named_when_the_run_is_read(store, tmp_path):
    wf = big_chain()
    blobs = LocalBlobStore(tmp_path / "blobs")
    async with Engine(store, [wf], blobs=blobs) as engine:
        handle = await engine.start(wf, params={"n": 2})
        assert (await handle.result(timeout=120)).status == "completed"
    for path in (tmp_path / "blobs").rglob("*"):
        if path.is_file():
            path.unlink()
    async with Engine(store, [wf], blobs=blobs, orchestrate=False, work=False) as reader:
        with pytest.raises(PayloadUnreadable) as caught:
            await reader.get_run(handle.run_id)
    error = str(caught.value)
    assert f"(key {handle.run_id!r})" in error and "is missing from file://" in error
    assert f"history/{handle.run_id}/" in error  # the blob's key


async def test_a_5mb_run_input_reaches_its_task_by_reference(store, tmp_path):
    wf = Workflow(name="ingest")

    @wf.task(id="count")
    def count(context):
        return {"chars": len(context.input["text"]), "tag": context.params["tag"]}

    async with Engine(store, [wf], blobs=LocalBlobStore(tmp_path / "blobs")) as engine:
        handle = await engine.start(wf, params={"tag": "t"}, input={"text": "z" * FIVE_MB})
        result = await handle.result(timeout=120)
        assert result.output == {"chars": FIVE_MB, "tag": "t"}
        assert len(result.input["text"]) == FIVE_MB
        records = await kept_records(engine, engine.topics.history, engine.topics.tasks)
    requested = [r for r in records if reference(r) is not None and r.topic.endswith("history")]
    assert requested and max(len(r.value) for r in records) < 256 * 1024


class LosingBlobStore(LocalBlobStore):
    """A directory that loses the blobs of task messages for one task, as a store whose
    objects were deleted too early would; or, ``corrupt``, keeps them with one byte changed."""

    def __init__(self, directory, task_id: str, *, corrupt: bool = False) -> None:
        super().__init__(directory)
        self.lose = f"_2f{task_id}/"
        self.corrupt = corrupt

    async def put(self, key: str, data: bytes) -> None:
        if ".tasks/" not in key or self.lose not in key:
            await super().put(key, data)
        elif self.corrupt:
            await super().put(key, data.replace(b"x", b"X", 1))


@pytest.mark.parametrize(
    ("corrupt", "why"),
    [(False, "is missing from file://"), (True, "is not the value the record refers to")],
    ids=["missing", "corrupt"],
)
async def test_a_task_whose_input_blob_is_lost_or_corrupt_fails_naming_the_run_task_and_key(
    store, tmp_path, corrupt, why
):
    wf = big_chain()
    blobs = LosingBlobStore(tmp_path, "consume", corrupt=corrupt)
    async with Engine(store, [wf], blobs=blobs, eager=False) as e:
        handle = await e.start(wf, params={"n": 3})
        result = await handle.result(timeout=120)
    assert result.status == "failed"
    assert result.tasks["produce"].status == "completed"
    consume = result.tasks["consume"]
    assert consume.error_type == "PayloadUnreadable" and consume.attempts == 1
    error = consume.error or ""
    assert f"task 'consume' of run {handle.run_id!r} cannot be given its input" in error
    assert (
        f"key '{handle.run_id}/consume'" in error and f"tasks/{handle.run_id}_2fconsume/" in error
    )
    assert why in error, error
    assert result.tasks["echo"].status == "skipped"  # nothing ran on a wrong value


@pytest.mark.s3
async def test_a_5mb_output_goes_to_the_s3_bucket_its_url_names(
    tmp_path, moto_endpoint, monkeypatch
):
    import boto3

    for name, value in (
        ("AWS_ENDPOINT_URL", moto_endpoint),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
    ):
        monkeypatch.setenv(name, value)
    bucket = f"blobs-{hashlib.sha256(str(tmp_path).encode()).hexdigest()[:10]}"
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=bucket)
    monkeypatch.setenv("DEERFLOW_BLOBS", f"s3://{bucket}/deerflow")
    wf = big_chain()
    async with Engine(f"sqlite:///{tmp_path / 'e.db'}", [wf]) as engine:
        handle = await engine.start(wf, params={"n": 5})
        result = await handle.result(timeout=120)
        assert result.status == "completed", result.error
        assert result.tasks["consume"].output["size"] == FIVE_MB
        refs = [ref for ref in map(reference, await kept_records(engine)) if ref is not None]
    assert refs and all(ref.store == f"s3://{bucket}/deerflow" for ref in refs)
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="deerflow/")["Contents"]
    sizes = {obj["Key"].removeprefix("deerflow/"): obj["Size"] for obj in listed}
    assert all(sizes[ref.key] == ref.size for ref in refs)
    assert not (tmp_path / "e.db.blobs").exists()  # the URL wins over the directory default
