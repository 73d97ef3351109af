"""Waits take events straight from a webhook path, an S3 bucket, a topic named later."""

from __future__ import annotations

import asyncio
import os
import runpy
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson
import pytest

from deerflow import Engine, Workflow
from deerflow.connectors import ApiKeys, TriggerSource, WebhookGateway, sources_for
from deerflow.errors import ConnectorError
from deerflow.events import S3Event, WebhookEvent
from deerflow.log.base import Message
from deerflow.matching import EventMatched
from tests.connectors.conftest import ROOT, aws, eventually, queue_is_empty, send_to
from tests.connectors.test_s3 import record
from tests.connectors.test_serve import Served
from tests.logs import history
from tests.matching.waits import invoices, payments, until_waiting
from tests.services import unique_name

__all__ = ["aws"]

APPROVALS = WebhookEvent(path="/approvals", delivery_id_header="X-Delivery")


@asynccontextmanager
async def served(engine: Engine, *workflows: Workflow) -> AsyncIterator[list[Any]]:
    """What ``deerflow serve`` runs for ``workflows``: the gateway (port 0) and the sources."""
    gateway = WebhookGateway(engine, port=0)
    sources: list[TriggerSource[Any]] = sources_for(engine, workflows, gateway=gateway)
    await gateway.start()
    for source in sources:
        await source.start()
    try:
        yield [gateway, *sources]
    finally:
        for source in sources:
            await source.stop()
        await gateway.stop()


@asynccontextmanager
async def gateway_of(engine: Engine, wf: Workflow, **options: Any) -> AsyncIterator[WebhookGateway]:
    """A started gateway (port 0) serving ``wf``'s webhooks, triggers and waits' sources."""
    gateway = WebhookGateway(engine, port=0, **options)
    sources_for(engine, [wf], gateway=gateway)
    await gateway.start()
    try:
        yield gateway
    finally:
        await gateway.stop()


async def post(url: str, body: Any, **headers: str) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, data=orjson.dumps(body), headers=headers) as reply,
    ):
        return reply.status, orjson.loads(await reply.read())


async def test_a_webhook_request_resumes_the_run_it_matches_once_however_often_sent(store):
    wf = invoices(source=APPROVALS)
    async with Engine(store, [wf]) as engine, served(engine, wf) as (gateway,):
        runs = [await engine.start(wf, params={"invoice_id": f"inv-{i}"}) for i in range(2)]
        await until_waiting(engine, *runs)
        url = f"{gateway.url}/approvals"
        body = {"invoice_id": "inv-1", "by": "ann"}
        first = await post(url, body, **{"X-Delivery": "d-1"})
        again = await post(url, body, **{"X-Delivery": "d-1"})  # the sender retries
        result = await runs[1].result(timeout=60)
        await asyncio.sleep(0.5)  # time for any extra resume to land
        events = await history(engine, runs[1].run_id)
        other = await runs[0].status()
        run_ids = set(engine.index.runs)
    assert first[0] == again[0] == 202
    assert first[1] == again[1] and set(first[1]) == {"event_id"}
    assert result.status == "completed", result.error
    assert result.output == "ann"
    event = result.tasks["approval"].output
    assert event["id"] == first[1]["event_id"]
    assert event["data"] == body
    assert event["source"] == "webhook:/approvals"
    assert sum(isinstance(e, EventMatched) for e in events) == 1
    assert other.tasks["approval"].status == "waiting"
    assert run_ids == {r.run_id for r in runs}  # the requests started no run


async def test_a_wait_s_webhook_refuses_a_key_reused_with_another_body_as_a_run_trigger(store):
    wf = invoices(source=WebhookEvent(path="/approvals"))
    wf.add_trigger(WebhookEvent(path="/invoices"))
    async with Engine(store, [wf]) as engine:
        async with gateway_of(engine, wf) as gateway:
            run = await engine.start(wf, params={"invoice_id": "inv-1"})
            await until_waiting(engine, run)
            url = f"{gateway.url}/approvals"
            ann, eve = {"invoice_id": "inv-1", "by": "ann"}, {"invoice_id": "inv-1", "by": "eve"}
            first = await post(url, ann, **{"Idempotency-Key": "k-1"})
            other = await post(url, eve, **{"Idempotency-Key": "k-1"})
            again = await post(url, ann, **{"Idempotency-Key": "k-1"})
            # two bodies racing for a fresh key: one is taken, the other refused
            bodies = [ann, eve]
            raced = await asyncio.gather(
                *(post(url, b, **{"Idempotency-Key": "k-2"}) for b in bodies)
            )
            taken, refused = sorted(range(2), key=lambda i: raced[i][0])
            # the run trigger answers the same reuse with the same refusal
            await post(f"{gateway.url}/invoices", {"n": 1}, **{"Idempotency-Key": "k-3"})
            run_trigger = await post(
                f"{gateway.url}/invoices", {"n": 2}, **{"Idempotency-Key": "k-3"}
            )
            result = await run.result(timeout=60)
        async with gateway_of(engine, wf) as restarted:  # reads the bindings from the log
            after = await post(f"{restarted.url}/approvals", eve, **{"Idempotency-Key": "k-1"})
            same = await post(f"{restarted.url}/approvals", ann, **{"Idempotency-Key": "k-1"})
            kept = [
                await post(f"{restarted.url}/approvals", bodies[i], **{"Idempotency-Key": "k-2"})
                for i in (taken, refused)
            ]
    assert first[0] == 202 and again == first
    assert other == (
        422,
        {
            "error": "Idempotency-Key 'k-1' was already used with another body; send the same "
            "body again to get its run, or use a new key"
        },
    )
    assert run_trigger == (422, {"error": other[1]["error"].replace("k-1", "k-3")})
    assert sorted(status for status, _ in raced) == [202, 422]
    assert kept == [raced[taken], raced[refused]]  # after a restart, the race's winner still wins
    assert result.output == "ann"  # the body first sent with the key
    assert after == other and same == first


async def test_a_webhook_request_the_gateway_refuses_resumes_nothing(store):
    wf = invoices(source=WebhookEvent(path="/approvals", auth="api_key"))
    async with (
        Engine(store, [wf]) as engine,
        gateway_of(engine, wf, api_keys=ApiKeys(["k1"])) as gateway,
    ):
        run = await engine.start(wf, params={"invoice_id": "inv-1"})
        await until_waiting(engine, run)
        body = {"invoice_id": "inv-1", "by": "eve"}
        refused = await post(f"{gateway.url}/approvals", body)
        accepted = await post(f"{gateway.url}/approvals", body, **{"X-API-Key": "k1"})
        result = await run.result(timeout=60)
    assert refused[0] == 401
    assert accepted[0] == 202
    assert result.output == "eve"


async def test_a_wait_s_webhook_takes_events_while_runs_saturate_the_engine(store):
    wf = invoices(source=APPROVALS)
    wf.add_trigger(WebhookEvent(path="/invoices"))
    async with Engine(store, [wf]) as engine, gateway_of(engine, wf, max_running=1) as gateway:
        run = await engine.start(wf, params={"invoice_id": "inv-1"})
        await until_waiting(engine, run)
        started = await post(f"{gateway.url}/invoices", {})  # a run: the engine is full
        body = {"invoice_id": "inv-1", "by": "ann"}
        approved = await post(f"{gateway.url}/approvals", body)
        result = await run.result(timeout=60)
    assert started[0] == 503
    assert approved[0] == 202
    assert result.output == "ann"


def test_two_waits_on_one_path_with_other_options_are_refused_clearly():
    one = invoices("one", source=WebhookEvent(path="/paid"))
    two = invoices("two", source=WebhookEvent(path="/paid", auth="hmac", signing_secrets=["s"]))
    with pytest.raises(ConnectorError, match="/paid are declared twice with different options"):
        sources_for(Engine("memory://x", [one, two]), [one, two], gateway=None)


def test_a_wait_on_the_path_of_a_run_trigger_is_refused_clearly():
    wf = invoices(source=WebhookEvent(path="/paid"))
    wf.add_trigger(WebhookEvent(path="/paid"))
    engine = Engine("memory://x", [wf])
    with pytest.raises(ConnectorError, match="/paid of workflow 'invoices': the path is served"):
        sources_for(engine, [wf], gateway=WebhookGateway(engine, port=0))


@pytest.mark.s3
@pytest.mark.parametrize(
    "store", ["sqlite", pytest.param("kafka", marks=pytest.mark.kafka)], indirect=True
)
async def test_an_s3_object_event_resumes_the_run_waiting_for_its_key_once(
    store, aws: tuple[Any, Any], moto_endpoint: str
):
    s3, sqs = aws
    bucket = unique_name("landing")
    s3.create_bucket(Bucket=bucket)
    queue = sqs.create_queue(QueueName=unique_name("q"))["QueueUrl"]
    spec = S3Event(bucket=bucket, queue=queue, endpoint_url=moto_endpoint, wait_seconds=1)
    wf = Workflow(name="landed")
    wf.wait_for_event(
        id="file", event="ObjectLanded", match={"data.key": "params.key"}, source=spec, timeout=60
    )
    async with Engine(store, [wf]) as engine, served(engine, wf) as (_, source):
        runs = [await engine.start(wf, params={"key": f"day={d}/_SUCCESS"}) for d in (1, 2)]
        await until_waiting(engine, *runs, node="file")
        message = {"Records": [record(bucket, "day%3D2/_SUCCESS", sequencer="00A1")]}
        send_to(sqs, queue, message)
        send_to(sqs, queue, message)  # S3 delivers at least once
        result = await runs[1].result(timeout=60)
        await eventually(lambda: queue_is_empty(sqs, queue), what="both deliveries deleted")
        await asyncio.sleep(0.5)
        events = await history(engine, runs[1].run_id)
        other = await runs[0].status()
    event = result.tasks["file"].output
    assert result.status == "completed", result.error
    assert event["type"] == "ObjectLanded"
    assert event["data"]["bucket"] == bucket
    assert event["data"]["key"] == "day=2/_SUCCESS"
    assert event["data"]["sequencer"] == "00A1"
    assert event["source"] == f"s3:{bucket}"
    assert sum(isinstance(e, EventMatched) for e in events) == 1
    assert source.published == 2  # both deliveries appended: one event id, one resume
    assert other.tasks["file"].status == "waiting"


@pytest.mark.s3
async def test_a_polled_bucket_s_new_object_resumes_the_run_waiting_for_it(
    tmp_path, aws: tuple[Any, Any], moto_endpoint: str
):
    s3, _ = aws
    bucket = unique_name("polled")
    s3.create_bucket(Bucket=bucket)
    spec = S3Event(bucket=bucket, mode="poll", poll_interval=0.2, endpoint_url=moto_endpoint)
    wf = Workflow(name="polled")
    wf.wait_for_event(
        id="file", event="ObjectLanded", match={"data.key": "params.key"}, source=spec, timeout=60
    )
    async with (
        Engine(f"sqlite:///{tmp_path / 'events.db'}", [wf]) as engine,
        served(engine, wf) as (_, source),
    ):
        run = await engine.start(wf, params={"key": "out/_SUCCESS"})
        await until_waiting(engine, run, node="file")
        await eventually(lambda: _listed(source), what="a first listing")
        s3.put_object(Bucket=bucket, Key="out/_SUCCESS", Body=b"")
        result = await run.result(timeout=60)
    assert result.status == "completed", result.error
    assert result.tasks["file"].output["data"]["key"] == "out/_SUCCESS"
    assert result.tasks["file"].output["source"] == f"s3:{bucket}"


async def _listed(source: Any) -> bool:
    return source.ledger.get(source.name) is not None


async def test_a_topic_named_by_a_workflow_registered_later_is_subscribed(store):
    first = invoices()
    async with Engine(store, [first]) as engine:
        await asyncio.sleep(0.5)  # the router runs, subscribed to what it knew then
        late = engine.register(payments("late", "payments-late"))
        run = await engine.start(late, params={"order": "o-1"})
        await until_waiting(engine, run, node="paid")
        body = orjson.dumps({"order": "o-1", "amount": 3})
        await engine.log.append([Message(topic="payments-late", key="o-1", value=body)])
        result = await run.result(timeout=60)
    assert result.status == "completed", result.error
    assert result.tasks["paid"].output["data"] == {"order": "o-1", "amount": 3}


SERVED_APP = """
from deerflow import Workflow
from deerflow.events import WebhookEvent

approvals = Workflow(name="approvals")
approvals.wait_for_event(
    id="approval",
    event="InvoiceApproved",
    match={"data.invoice_id": "params.invoice_id"},
    source=WebhookEvent(path="/approvals", delivery_id_header="X-Delivery"),
)
"""


async def test_deerflow_serve_serves_the_webhook_path_a_wait_names(tmp_path, monkeypatch):
    app = tmp_path / "app.py"
    app.write_text(SERVED_APP)
    store = f"sqlite:///{tmp_path / 'events.db'}"
    prefix = unique_name("t").replace("-", "")
    monkeypatch.setenv("DEERFLOW_PREFIX", prefix)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    served = await asyncio.to_thread(Served, [str(app), "--store", store], env)
    try:
        async with Engine(store, orchestrate=False, work=False) as client:
            # Known to the client, its plugins not adopted: only the served process matches.
            client.registry.add(runpy.run_path(str(app))["approvals"])
            run = await client.start_run("approvals", params={"invoice_id": "inv-3"})
            await until_waiting(client, run)
            body = {"invoice_id": "inv-3", "by": "lee"}
            replies = [
                await post(f"{served.url}/approvals", body, **{"X-Delivery": "d-3"})
                for _ in range(2)
            ]
            result = await run.result(timeout=60)
    finally:
        served.terminate()
        code = await asyncio.to_thread(served.wait)
    assert [status for status, _ in replies] == [202, 202]
    assert replies[0][1] == replies[1][1]
    assert result.status == "completed", result.error
    assert result.tasks["approval"].output["data"] == body
    assert code == 0
