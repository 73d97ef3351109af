"""Helpers for the trigger tests: per-test topic prefixes, engines, waiting for runs."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import boto3
import orjson
import pytest

from deerflow import Engine, RunResult, Workflow
from deerflow.log.base import TopicPartition
from tests.services import unique_name

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def prefix(monkeypatch: pytest.MonkeyPatch) -> str:
    """A topic prefix of this test's own; no API keys or config leak in from outside."""
    name = unique_name("t").replace("-", "")
    monkeypatch.setenv("DEERFLOW_PREFIX", name)
    for var in (
        "DEERFLOW_API_KEYS",
        "DEERFLOW_WEBHOOK_SECRETS",
        "DEERFLOW_CONFIG",
        "DEERFLOW_MAX_RUNNING_RUNS",
    ):
        monkeypatch.delenv(var, raising=False)
    return name


def recording_workflow(name: str = "on_event") -> Workflow:
    """A one-task workflow whose output describes the trigger event it saw."""
    wf = Workflow(name=name)

    @wf.task(id="handle")
    def handle(context: Any) -> dict[str, Any]:
        event = context.trigger_event
        return {"event": event.model_dump(mode="json"), "kind": type(event).__name__}

    return wf


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    """A started engine on a fresh in-memory store with :func:`recording_workflow`."""
    async with Engine(f"memory://{unique_name('log')}", [recording_workflow()]) as eng:
        yield eng


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session for requests to a gateway."""
    async with aiohttp.ClientSession() as session:
        yield session


async def post(
    http: aiohttp.ClientSession,
    url: str,
    body: Any = None,
    *,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any], Any]:
    """POST ``body`` as JSON (or ``data`` as it is): status, reply headers, decoded reply."""
    payload = orjson.dumps(body) if data is None else data
    async with http.post(url, data=payload, headers=headers or {}) as reply:
        text = await reply.read()
        return reply.status, dict(reply.headers), orjson.loads(text) if text else None


@pytest.fixture
def aws(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Any]]:
    """S3 and SQS clients on moto, with dummy credentials in the environment."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    options = {"endpoint_url": moto_endpoint, "region_name": "us-east-1"}
    yield boto3.client("s3", **options), boto3.client("sqs", **options)


def send_to(sqs: Any, url: str, body: Any) -> None:
    """Send ``body`` (JSON-encoded unless already text) to the SQS queue at ``url``."""
    text = body if isinstance(body, str) else orjson.dumps(body).decode()
    sqs.send_message(QueueUrl=url, MessageBody=text)


async def queue_is_empty(sqs: Any, url: str) -> bool:
    """Whether the SQS queue holds no message, visible or in flight."""
    attrs = await asyncio.to_thread(
        sqs.get_queue_attributes,
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )
    values = attrs["Attributes"]
    return (
        values["ApproximateNumberOfMessages"]
        == values["ApproximateNumberOfMessagesNotVisible"]
        == "0"
    )


async def eventually(
    check: Callable[[], Awaitable[bool]], within: float = 20.0, what: str = "condition"
) -> None:
    """Wait until ``check()`` is true; fail naming ``what`` after ``within`` s."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def finished_runs(engine: Engine, count: int, within: float = 30.0) -> list[RunResult]:
    """Wait until exactly ``count`` runs exist and all have ended; return them."""

    async def done() -> bool:
        runs = await engine.list_runs()
        return len(runs) >= count and all(r.done for r in runs)

    await eventually(done, within, f"{count} finished runs")
    return await engine.list_runs()


async def dead_letters(engine: Engine) -> list[dict[str, Any]]:
    """Every record of the engine's dead-letter topic, decoded."""
    letters: list[dict[str, Any]] = []
    for p in range(await engine.log.partition_count(engine.topics.dlq)):
        part = await engine.log.read_partition(TopicPartition(engine.topics.dlq, p))
        letters += [orjson.loads(r.value) for r in part]
    return letters


@pytest.fixture
def cli_env(prefix: str) -> dict[str, str]:
    """The environment of a ``deerflow`` subprocess: this test's prefix, this checkout's code."""
    return dict(os.environ, DEERFLOW_PREFIX=prefix, PYTHONPATH=str(ROOT))


@pytest.fixture
def aws_env(cli_env: dict[str, str], moto_endpoint: str) -> dict[str, str]:
    """:func:`cli_env` with moto's endpoint and test credentials."""
    return dict(
        cli_env,
        AWS_ENDPOINT_URL=moto_endpoint,
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",
        AWS_DEFAULT_REGION="us-east-1",
    )
