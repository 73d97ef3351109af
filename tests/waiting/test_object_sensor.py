"""An S3 key sensor on moto_server: the node waits until the object lands, checking on a
worker every ``poke`` and holding no slot in between; its deadline survives a restart."""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from typing import Any

import boto3
import pytest

from deerflow import DefinitionError, Engine, Workflow
from deerflow.core import history as h
from deerflow.waiting import WaitArmed
from deerflow.web._runs import run_detail
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


def landing(
    bucket: str, timeout: float = 60, on_timeout: str = "none", poke: float = 0.3
) -> Workflow:
    wf = Workflow(name="landing", max_parallel=1)
    wf.wait_for_object(
        id="landed",
        bucket=bucket,
        key="day={params.day}/_SUCCESS",
        timeout=timeout,
        poke=poke,
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


async def test_a_sensor_between_two_checks_shows_as_waiting_for_its_object(store, s3):
    _, bucket = s3
    wf = landing(bucket, timeout=3600, poke=600)
    async with Engine(store, [wf]) as engine:
        before = time.time()
        handle = await engine.start(wf, params={"day": "2026-12-08"})
        state = await engine.index.wait(
            handle.run_id,
            lambda s: s.tasks.get("landed") is not None and s.tasks["landed"].error is not None,
            30,
        )
        after = time.time()
        assert state is not None and state.tasks["landed"].error_type == "ObjectNotYetPresent"
        result = await handle.status()
        detail = (await run_detail(engine, handle.run_id)).as_json()
    awaited = f"object s3://{bucket}/day=2026-12-08/_SUCCESS"
    assert result.tasks["landed"].status == "waiting"
    assert result.tasks["landed"].next_attempt_at is not None  # its next check
    node = next(n for n in detail["graph"]["nodes"] if n["id"] == "landed")
    assert (node["status"], node["waits_for"]) == ("waiting", awaited)
    assert detail["waits"]["landed"]["for"] == awaited
    assert detail["waits"]["landed"]["deadline"] == node["deadline"]
    # an hour from when the sensor began, which was between the start and the check
    assert before + 3600 - 1 <= node["deadline"] <= after + 3600 + 1
    if not store.startswith("memory"):  # another process reads the same history
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "deerflow", "runs", "show", handle.run_id, "--store", store),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=dict(os.environ, COLUMNS="200"),
        )
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode == 0, err.decode()
        shown = out.decode()
        line = next(x for x in shown.splitlines() if "landed" in x and "│" in x)
        assert "waiting" in line and "retrying" not in line
        assert f"landed waits for {awaited} until 20" in shown


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
