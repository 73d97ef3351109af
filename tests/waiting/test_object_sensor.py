"""An S3 key sensor on moto_server: the node waits until the object lands, checking on a
worker every ``poke`` and holding no slot in between; its deadline survives a restart."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import boto3
import pytest

from deerflow import DefinitionError, Engine, Workflow
from deerflow.core import history as h
from deerflow.waiting import WaitArmed
from tests.engine.test_custom_kind import run_history

pytestmark = pytest.mark.s3


@pytest.fixture
def s3(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, str]:
    """An S3 client on moto with a fresh bucket; boto3 in the engine finds moto too."""
    for var, value in (
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", moto_endpoint),
    ):
        monkeypatch.setenv(var, value)
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    bucket = f"raw-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    return client, bucket


def landing(bucket: str, timeout: float = 60, on_timeout: str = "none") -> Workflow:
    wf = Workflow(name="landing", max_parallel=1)
    wf.wait_for_object(
        id="landed",
        bucket=bucket,
        key="day={params.day}/_SUCCESS",
        timeout=timeout,
        poke=0.3,
        on_timeout=on_timeout,  # type: ignore[arg-type]
    )

    @wf.task(id="beside")
    def beside(context):
        return "ran while the sensor waited"

    @wf.task(id="load", depends_on=["landed"])
    def load(context):
        return context.tasks["landed"].output

    return wf


async def test_the_sensor_gives_the_object_once_it_lands(store, s3):
    client, bucket = s3
    wf = landing(bucket)
    async with Engine(store, [wf]) as engine:
        handle = await engine.start(wf, params={"day": "2026-12-07"})
        state = await engine.index.wait(
            handle.run_id,
            lambda s: s.tasks.get("landed") is not None and s.tasks["landed"].attempts >= 3,
            30,
        )
        assert state is not None
        # Between checks the sensor holds no slot: the other task ran (max_parallel=1).
        assert state.tasks["beside"].status == "completed"
        client.put_object(Bucket=bucket, Key="day=2026-12-07/_SUCCESS", Body=b"ok!")
        result = await handle.result(timeout=60)
        history = await run_history(engine, handle.run_id)
    assert result.status == "completed", result.error
    landed = result.tasks["landed"].output
    assert landed["bucket"] == bucket and landed["key"] == "day=2026-12-07/_SUCCESS"
    assert landed["size"] == 3 and len(landed["etag"]) == 32 and landed["last_modified"]
    assert result.tasks["load"].output == landed
    armed = [e for e in history if isinstance(e, WaitArmed)]
    assert [e.waits_for for e in armed] == [f"object s3://{bucket}/day=2026-12-07/_SUCCESS"]
    failed = [e for e in history if isinstance(e, h.TaskFailed)]
    assert failed and {e.error_type for e in failed} == {"ObjectNotYetPresent"}


async def test_a_sensor_times_out_with_none_or_fails_and_the_deadline_survives_a_restart(store, s3):
    _, bucket = s3
    quiet, strict = landing(bucket, timeout=1.5), landing(bucket, timeout=2, on_timeout="fail")
    strict.name = "strict_landing"
    async with Engine(store, [quiet, strict]) as engine:
        first = await engine.start(quiet, params={"day": "never"})
        second = await engine.start(strict, params={"day": "never"})
        await engine.index.wait(second.run_id, lambda s: "landed" in s.tasks, 30)
    await asyncio.sleep(0.5)
    async with Engine(store, [quiet, strict]) as engine:
        quiet_result = await engine.wait(first.run_id, timeout=60)
        strict_result = await engine.wait(second.run_id, timeout=60)
    assert quiet_result.status == "completed" and quiet_result.tasks["landed"].output is None
    assert strict_result.status == "failed"
    assert strict_result.tasks["landed"].error == (
        f"no object s3://{bucket}/day=never/_SUCCESS within 2s"
    )


def test_a_bad_sensor_is_refused_at_definition():
    wf = Workflow(name="bad_sensor")
    with pytest.raises(DefinitionError, match="poke='often' is not a duration"):
        wf.wait_for_object(id="x", bucket="b", key="k", poke="often")
    with pytest.raises(DefinitionError, match="bucket= must be a non-empty string"):
        wf.wait_for_object(id="x", bucket="", key="k")
