"""``deerflow serve`` as a real process: restarts lose no acknowledged trigger, and the spec's
Event Triggers sample serves Kafka, webhook and S3 events as written."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO, Any

import aiohttp
import boto3
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from deerflow import Engine
from tests.connectors.conftest import eventually
from tests.services import unique_name

pytestmark = pytest.mark.kafka
ROOT = Path(__file__).resolve().parents[2]
APP = """
from deerflow import Workflow
from deerflow.events import KafkaEvent, WebhookEvent

workflow = Workflow(name="restartable")
workflow.add_trigger(KafkaEvent(topic={topic!r}, consumer_group={group!r}))
workflow.add_trigger(WebhookEvent(path="/hook"))


@workflow.task(id="take")
def take(context):
    event = context.trigger_event
    return {{"n": event.message["n"] if event.type == "kafka" else event.body["n"]}}
"""


class Served:
    """One ``deerflow serve`` process."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self._log: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from deerflow.cli import main; main()",
                "serve",
                *args,
                "--port",
                "0",
            ],
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
            cwd=ROOT,
        )
        self.url = self._wait_ready()

    def _wait_ready(self) -> str:
        found: list[str] = []

        def read() -> None:
            assert self.process.stdout is not None
            for line in self.process.stdout:
                text = line.decode()
                if "listening on " in text:
                    found.append(text.rsplit(" ", 1)[1].strip())
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(timeout=40)
        if not found:
            self.process.kill()
            pytest.fail(f"deerflow serve did not start:\n{self.output()}")
        return found[0]

    def output(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-4000:]

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)

    def wait(self) -> int:
        try:
            return self.process.wait(timeout=40)
        finally:
            if self.process.poll() is None:
                self.process.kill()
            self._log.close()


@pytest.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    prod = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await prod.start()
    try:
        yield prod
    finally:
        await prod.stop()


@pytest.fixture
def serve_env(kafka_url: str, prefix: str) -> Iterator[dict[str, str]]:
    env = dict(
        os.environ, DEERFLOW_KAFKA_BOOTSTRAP=kafka_url, DEERFLOW_PREFIX=prefix, PYTHONPATH=str(ROOT)
    )
    yield env


class Poster:
    """Posts webhook deliveries continuously; remembers which were acknowledged (202)."""

    def __init__(self, http: aiohttp.ClientSession) -> None:
        self.http = http
        self.acked: dict[int, str] = {}
        self.sent = 0

    async def run(self, url: str, count: int | None = None) -> None:
        while count is None or self.sent < count:
            n = 1000 + self.sent
            self.sent += 1
            try:
                async with self.http.post(
                    f"{url}/hook", json={"n": n}, headers={"Idempotency-Key": f"d{n}"}
                ) as reply:
                    if reply.status == 202:
                        self.acked[n] = (await reply.json())["run_id"]
            except aiohttp.ClientError:
                await asyncio.sleep(0.05)  # the server is going away: not acknowledged
            await asyncio.sleep(0.02)


async def test_a_restart_mid_stream_loses_no_acknowledged_trigger(
    tmp_path: Path, serve_env: dict[str, str], producer: AIOKafkaProducer
) -> None:
    topic, group = unique_name("orders"), unique_name("g")
    app = tmp_path / "app.py"
    app.write_text(APP.format(topic=topic, group=group))
    store = f"sqlite:///{tmp_path / 'events.db'}"
    args = [str(app), "--store", store]

    async with (
        Engine(store, orchestrate=False, work=False) as reader,
        aiohttp.ClientSession() as http,
    ):
        first = await asyncio.to_thread(Served, args, serve_env)
        poster = Poster(http)
        posting = asyncio.create_task(poster.run(first.url))
        for n in range(5):
            await producer.send_and_wait(topic, orjson.dumps({"n": n}))

        async def some_runs() -> bool:
            return len(await reader.list_runs()) >= 3

        await eventually(some_runs, 30, "runs before the restart")
        first.terminate()  # mid-stream: more messages and requests keep coming
        for n in range(5, 10):
            await producer.send_and_wait(topic, orjson.dumps({"n": n}))
        assert await asyncio.to_thread(first.wait) == 0, first.output()
        posting.cancel()

        second = await asyncio.to_thread(Served, args, serve_env)
        for n in range(10, 15):
            await producer.send_and_wait(topic, orjson.dumps({"n": n}))
        await poster.run(second.url, count=poster.sent + 5)
        acked = dict(poster.acked)

        async def all_done() -> bool:
            runs = await reader.list_runs()
            seen = {r.output["n"] for r in runs if r.done and r.output}
            return set(range(15)) <= seen and set(acked) <= seen

        await eventually(all_done, 60, "every acknowledged trigger's run")
        runs = await reader.list_runs()
        second.terminate()
        assert await asyncio.to_thread(second.wait) == 0
    kafka_runs = [r for r in runs if r.output["n"] < 1000]
    assert sorted(r.output["n"] for r in kafka_runs) == list(range(15))  # once each
    webhook_ids = {r.run_id for r in runs if r.output["n"] >= 1000}
    assert set(acked.values()) <= webhook_ids
    assert all(r.status == "completed" for r in runs)


async def test_the_spec_event_triggers_sample_serves_all_three_sources(
    tmp_path: Path, serve_env: dict[str, str], producer: AIOKafkaProducer, moto_endpoint: str
) -> None:
    env = dict(
        serve_env,
        DEERFLOW_API_KEYS="example-key",
        AWS_ENDPOINT_URL=moto_endpoint,
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",
        AWS_DEFAULT_REGION="us-east-1",
    )
    s3 = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    s3.create_bucket(Bucket="data-lake")
    store = f"sqlite:///{tmp_path / 'events.db'}"
    served = await asyncio.to_thread(
        Served, [str(ROOT / "examples" / "triggers.py"), "--store", store], env
    )
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{served.url}/trigger/pipeline",
                json={"ref": "main"},
                headers={"X-API-Key": "example-key"},
            ) as reply:
                assert reply.status == 202
                status_url = (await reply.json())["status_url"]
            await producer.send_and_wait("data-events", orjson.dumps({"type": "new_data"}))
            await producer.send_and_wait("data-events", orjson.dumps({"type": "noise"}))
            s3.put_object(Bucket="data-lake", Key="incoming/day 1.parquet", Body=b"x")
            s3.put_object(Bucket="data-lake", Key="incoming/skip.csv", Body=b"x")
            outputs: list[Any] = []
            async with Engine(store, orchestrate=False, work=False) as reader:

                async def three() -> bool:
                    runs = await reader.list_runs()
                    outputs[:] = [r.output for r in runs if r.done]
                    return len(outputs) >= 3

                await eventually(three, 60, "three runs")
                await asyncio.sleep(0.5)
                assert len(await reader.list_runs()) == 3
            async with http.get(status_url, headers={"X-API-Key": "example-key"}) as got:
                assert (await got.json())["status"] == "completed"
    finally:
        served.terminate()
        code = await asyncio.to_thread(served.wait)
    assert code == 0
    assert {"source": "s3", "uri": "s3://data-lake/incoming/day 1.parquet"} in outputs
    assert {"source": "kafka", "message": {"type": "new_data"}} in outputs
    assert None in outputs  # the sample's task returns nothing for webhooks


def test_triggers_replay_redelivers_past_messages_deduplicated_unless_new_runs(
    tmp_path: Path,
    kafka_url: str,
    kafka_bootstrap: str,
    prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from typer.testing import CliRunner

    from deerflow.cli import app as cli

    topic, group = unique_name("replayed"), unique_name("g")
    app = tmp_path / "app.py"
    app.write_text(APP.format(topic=topic, group=group))
    store = f"sqlite:///{tmp_path / 'events.db'}"
    monkeypatch.setenv("DEERFLOW_KAFKA_BOOTSTRAP", kafka_url)

    async def publish() -> None:
        async with AIOKafkaProducer(bootstrap_servers=kafka_bootstrap) as prod:
            for n in range(4):
                await prod.send_and_wait(topic, orjson.dumps({"n": n}), partition=0)

    async def count() -> int:
        async with Engine(store, orchestrate=False, work=False) as engine:
            return len(await engine.list_runs())

    asyncio.run(publish())
    runner = CliRunner()
    name = "restartable.kafka." + topic
    listed = runner.invoke(cli, ["triggers", "list", "--app", str(app)])
    assert name in listed.output
    replay = ["triggers", "replay", name, "--app", str(app), "--store", store]
    for _ in range(2):  # the second replay starts nothing new
        result = runner.invoke(cli, [*replay, "--from-offset", "0"])
        assert result.exit_code == 0, result.output
        assert "re-delivered 4 messages" in result.output
        assert asyncio.run(count()) == 4
    assert runner.invoke(cli, [*replay, "--from-offset", "2", "--new-runs"]).exit_code == 0
    assert asyncio.run(count()) == 6
    assert runner.invoke(cli, [*replay, "--since", "1h"]).exit_code == 0
    assert asyncio.run(count()) == 6
    refused = runner.invoke(cli, [*replay])
    assert refused.exit_code != 0 and "exactly one of" in refused.output
