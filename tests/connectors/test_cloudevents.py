"""CloudEvents 1.0 into runs: over real HTTP (binary, structured, batch) and a real Kafka
broker (the Kafka protocol binding), the events made and encoded by the ``cloudevents`` SDK."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent as SdkCloudEvent

from deerflow import Engine
from deerflow.connectors import WebhookGateway, sources_for
from deerflow.events import KafkaEvent, WebhookEvent
from tests.connectors.conftest import dead_letters, finished_runs, post, recording_workflow
from tests.services import unique_name
from tests.test_docs import ROOT, blocks

SOURCE = "//orders.example.com/eu"
WHEN = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
GUIDE = ROOT / "docs" / "guides" / "event-triggers.md"


def order_event(event_id: str, **data: Any) -> SdkCloudEvent:
    return SdkCloudEvent(
        {
            "id": event_id,
            "source": SOURCE,
            "type": "com.example.order.created",
            "subject": f"order/{event_id}",
            "time": WHEN,
            "datacontenttype": "application/json",
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        },
        {"order": event_id, **data},
    )


@pytest.fixture
async def gateway(engine: Engine) -> AsyncIterator[WebhookGateway]:
    gw = WebhookGateway(engine, port=0)
    gw.add_webhook("on_event", WebhookEvent(path="/events"))
    await engine.add_service(gw)
    yield gw


async def test_a_binary_mode_cloudevent_starts_a_run_that_sees_its_attributes(
    engine: Engine, gateway: WebhookGateway, http: aiohttp.ClientSession
) -> None:
    message = ce_http.to_binary_event(order_event("o-1", total=12.5))
    status, _, reply = await post(
        http, f"{gateway.url}/events", data=message.body, headers=message.headers
    )
    assert status == 202, reply
    run = await engine.wait(reply["run_id"], timeout=20)
    event = run.output["event"]
    assert event["body"] == {"order": "o-1", "total": 12.5}
    assert event["delivery_id"] == "o-1"
    cloudevent = event["cloudevent"]
    assert cloudevent == {
        "id": "o-1",
        "source": SOURCE,
        "type": "com.example.order.created",
        "specversion": "1.0",
        "subject": "order/o-1",
        "time": "2026-03-01T12:30:00Z",
        "datacontenttype": "application/json",
        "dataschema": None,
        "data": {"order": "o-1", "total": 12.5},
        "extensions": {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
    }


async def test_one_cloudevent_sent_in_both_modes_and_in_a_batch_is_one_run(
    engine: Engine, gateway: WebhookGateway, http: aiohttp.ClientSession
) -> None:
    url = f"{gateway.url}/events"
    binary = ce_http.to_binary_event(order_event("o-2"))
    structured = ce_http.to_structured_event(order_event("o-2"))
    assert structured.headers["content-type"] == "application/cloudevents+json"
    replies = [await post(http, url, data=m.body, headers=m.headers) for m in (binary, structured)]
    assert [status for status, _, _ in replies] == [202, 202]
    assert replies[0][2]["run_id"] == replies[1][2]["run_id"]

    # Batch mode: one run per event; the event already seen is its run again.
    batch = [orjson.loads(JSONFormat().write(order_event(i))) for i in ("o-2", "o-3", "o-4")]
    status, _, reply = await post(
        http,
        url,
        data=orjson.dumps(batch),
        headers={"Content-Type": "application/cloudevents-batch+json"},
    )
    assert status == 202, reply
    run_ids = [r["run_id"] for r in reply["runs"]]
    assert len(run_ids) == 3 and run_ids[0] == replies[0][2]["run_id"]
    runs = await finished_runs(engine, 3)
    assert sorted(r.output["event"]["cloudevent"]["id"] for r in runs) == ["o-2", "o-3", "o-4"]


async def test_a_request_that_claims_to_be_a_cloudevent_but_is_not_gets_400(
    engine: Engine, gateway: WebhookGateway, http: aiohttp.ClientSession
) -> None:
    url = f"{gateway.url}/events"
    structured = {"Content-Type": "application/cloudevents+json"}
    no_id = orjson.dumps({"specversion": "1.0", "source": SOURCE, "type": "t", "data": {}})
    status, _, reply = await post(http, url, data=no_id, headers=structured)
    assert status == 400 and reply["error"] == "not a valid CloudEvent: CloudEvent without id"
    binary = {"ce-specversion": "1.0", "ce-id": "x", "ce-type": "t"}
    status, _, reply = await post(http, url, {"a": 1}, headers=binary)
    assert status == 400 and "without source" in reply["error"]
    batch = {"Content-Type": "application/cloudevents-batch+json"}
    status, _, reply = await post(http, url, {"not": "a list"}, headers=batch)
    assert status == 400 and reply["error"] == "CloudEvents batch is not a JSON array"
    too_many = [
        {"specversion": "1.0", "id": str(i), "source": "s", "type": "t"} for i in range(1001)
    ]
    status, _, reply = await post(http, url, too_many, headers=batch)
    assert status == 400 and reply["error"] == "CloudEvents batch of 1001 events; at most 1000"
    assert await engine.list_runs() == []


@pytest.mark.kafka
async def test_kafka_cloudevents_in_binary_and_structured_mode_are_one_run_per_source_and_id(
    engine: Engine, kafka_bootstrap: str, kafka_url: str
) -> None:
    topic = unique_name("ce-orders")
    wf = recording_workflow()
    wf.add_trigger(
        KafkaEvent(
            topic=topic,
            consumer_group=unique_name("g"),
            bootstrap_servers=kafka_url,
            filter=lambda data: data["order"] != "skip",
        )
    )
    messages = [
        ce_kafka.to_binary_event(order_event("k-1")),
        ce_kafka.to_structured_event(order_event("k-1")),  # the same event again: no new run
        ce_kafka.to_structured_event(order_event("k-2")),
        ce_kafka.to_binary_event(order_event("skip")),
    ]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for m in messages:
            await producer.send_and_wait(topic, m.value, headers=list(m.headers.items()))
        await producer.send_and_wait(
            topic, b"{}", headers=[("ce_specversion", b"1.0"), ("ce_type", b"t")]
        )
    finally:
        await producer.stop()
    (source,) = sources_for(engine, [wf])
    await engine.add_service(source)

    runs = await finished_runs(engine, 2)
    assert len(runs) == 2
    events = {r.output["event"]["cloudevent"]["id"]: r.output["event"] for r in runs}
    assert sorted(events) == ["k-1", "k-2"]
    assert events["k-2"]["message"] == {"order": "k-2"}
    assert events["k-1"]["cloudevent"]["time"] == "2026-03-01T12:30:00Z"
    assert events["k-1"]["cloudevent"]["subject"] == "order/k-1"
    (letter,) = await dead_letters(engine)
    assert "without id, source" in letter["reason"]


@pytest.mark.kafka
def test_the_guides_kafka_example_is_one_run_for_one_event_sent_in_both_modes(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    (block,) = [
        b
        for b in blocks(GUIDE, "python")
        if b.not_run is not None and "test_cloudevents.py" in b.not_run
    ]
    code = block.code.replace('"orders-paid"', repr(unique_name("orders-paid")))
    monkeypatch.setenv("DEERFLOW_KAFKA_BOOTSTRAP", kafka_bootstrap)
    exec(compile(code, f"{GUIDE}:{block.line}", "exec"), {"__name__": "guide"})
