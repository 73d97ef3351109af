"""Values over the hard limit: a task's output, a webhook body, a Kafka trigger message."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from deerflow import Engine, Workflow
from deerflow.connectors import WebhookGateway
from deerflow.events import WebhookEvent
from deerflow.log import open_log
from deerflow.payloads import ClaimCheck, LocalBlobStore, PayloadLog
from tests.connectors.conftest import dead_letters, eventually, post, recording_workflow

LIMIT = 2_000_000  # the hard limit of these tests' logs, as 64 MB is by default


def limited(tmp_path: Path) -> PayloadLog:
    """A SQLite log with a blob store, taking values of at most :data:`LIMIT` bytes."""
    store = LocalBlobStore(tmp_path / "blobs")
    return PayloadLog(open_log(f"sqlite:///{tmp_path / 'e.db'}"), ClaimCheck(store), limit=LIMIT)


@pytest.fixture(autouse=True)
def _prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEERFLOW_PREFIX", f"t{uuid.uuid4().hex[:10]}")


async def test_an_output_over_the_hard_limit_fails_its_task_in_one_line_naming_run_task_size(
    tmp_path: Path,
) -> None:
    wf = Workflow(name="huge")

    @wf.task(id="render")
    def render(context: Any) -> str:
        return "x" * 3_000_000

    async with Engine(limited(tmp_path), [wf]) as engine:
        handle = await engine.start(wf)
        result = await handle.result(timeout=60)
    assert result.status == "failed"
    task = result.tasks["render"]
    assert task.error_type == "PayloadTooLarge" and task.attempts == 1  # not retried
    assert task.error == (
        f"task 'render' of run {handle.run_id!r} returned 3.0 MB, more than the 2.0 MB a value "
        "may be even in the blob store; pass a reference to where the data lies (an object "
        "key, a URL) instead of the data"
    )


async def test_a_webhook_body_over_the_hard_limit_is_answered_413_and_starts_no_run(
    tmp_path: Path,
) -> None:
    async with Engine(limited(tmp_path), [recording_workflow()]) as engine:
        gateway = WebhookGateway(engine, port=0)
        gateway.add_webhook("on_event", WebhookEvent(path="/in", max_body=4_000_000))
        await engine.add_service(gateway)
        async with aiohttp.ClientSession() as http:
            # the event holds the body twice (decoded, and as raw text): 5 MB
            body = orjson.dumps({"text": "b" * 2_500_000})
            status, _, reply = await post(http, f"{gateway.url}/in", data=body)
            small, _, _ = await post(http, f"{gateway.url}/in", data=orjson.dumps({"n": 1}))
        assert status == 413, reply
        error = reply["error"] if isinstance(reply, dict) else str(reply)
        assert "the trigger event for run" in error and "of workflow 'on_event' is 5.0 MB" in error
        assert "more than the 2.0 MB a value may be even in the blob store" in error
        assert small == 202
        assert [r.workflow for r in await engine.list_runs()] == ["on_event"]  # the small one


async def test_a_wait_s_webhook_body_over_the_hard_limit_is_answered_413_and_resumes_nothing(
    tmp_path: Path,
) -> None:
    from deerflow.connectors import sources_for
    from tests.matching.waits import invoices, until_waiting

    wf = invoices(source=WebhookEvent(path="/approvals", max_body=4_000_000))
    async with Engine(limited(tmp_path), [wf]) as engine:
        gateway = WebhookGateway(engine, port=0)
        sources_for(engine, [wf], gateway=gateway)
        await engine.add_service(gateway)
        run = await engine.start(wf, params={"invoice_id": "inv-1"})
        await until_waiting(engine, run)
        url = f"{gateway.url}/approvals"
        async with aiohttp.ClientSession() as http:
            big = {"invoice_id": "inv-1", "by": "b" * 2_500_000}  # under max_body, not the log's
            status, headers, reply = await post(http, url, big)
            small, _, _ = await post(http, url, {"invoice_id": "inv-1", "by": "ann"})
        result = await run.result(timeout=60)
    assert status == 413, reply
    assert headers.get("Connection") == "close"
    assert reply == {
        "error": "the event from webhook:/approvals is 2.5 MB, more than the 2.0 MB a value may "
        "be even in the blob store; pass a reference to where the data lies (an object key, a "
        "URL) instead of the data"
    }
    assert small == 202
    assert result.output == "ann"  # resumed by the small body, never by the refused one


@pytest.mark.kafka
async def test_a_kafka_message_too_large_for_the_log_goes_to_the_dead_letters(
    kafka_url: str, kafka_bootstrap: str
) -> None:
    """On Kafka without a blob store, a 600 kB message makes a run request over the limit:
    its trigger event holds it twice (decoded, and as raw text)."""
    from aiokafka import AIOKafkaProducer

    from deerflow.connectors import KafkaTriggerSource, sources_for
    from deerflow.events import KafkaEvent

    topic = f"big-{uuid.uuid4().hex[:8]}"
    wf = recording_workflow()
    wf.add_trigger(
        KafkaEvent(
            topic=topic, consumer_group=f"g-{uuid.uuid4().hex[:8]}", bootstrap_servers=kafka_url
        )
    )
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    async with Engine(kafka_url, [wf], blobs="none") as engine:
        [source] = sources_for(engine, [wf])
        assert isinstance(source, KafkaTriggerSource)
        await producer.start()
        try:
            await producer.send_and_wait(topic, orjson.dumps({"text": "k" * 600_000}), key=b"a")
            await producer.send_and_wait(topic, orjson.dumps({"n": 2}), key=b"b")
        finally:
            await producer.stop()
        await engine.add_service(source)
        letters: list[dict[str, Any]] = []

        async def lettered() -> bool:
            letters[:] = await dead_letters(engine)
            return bool(letters) and len(await engine.list_runs()) == 1

        await eventually(lettered, what="a dead letter and the small message's run")
    [letter] = letters
    assert letter["topic"] == topic and letter["offset"] == 0
    assert (
        "of workflow 'on_event' is 1.2 MB, more than the 1.0 MB a payload may be"
        in letter["reason"]
    )
    assert "configure a blob store" in letter["reason"]
