"""A wait names the CloudEvents ``type`` it takes: an event written to the events topic as a
CloudEvent, by deerflow or by another producer in either Kafka binding mode, resumes the run
it matches; a CloudEvent of another type does not."""

from __future__ import annotations

import asyncio
from typing import Any

from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from deerflow import Engine, EventStore, Workflow
from deerflow.log.base import Message
from tests.matching.waits import until_waiting

APPROVED = "com.acme.invoice.approved"


def approvals() -> Workflow:
    """One node, ``approval``: waits for the CloudEvent approving the run's invoice."""
    wf = Workflow(name="approvals")
    wf.wait_for_event(
        id="approval",
        event=APPROVED,
        match={"data.invoice_id": "params.invoice_id"},
        timeout="2m",
    )
    return wf


def written(event_type: str, ident: str, data: Any, *, binary: bool) -> tuple[bytes, Any]:
    """A CloudEvent as another system's producer writes it with the SDK's Kafka binding."""
    event = CloudEvent(
        {
            "id": ident,
            "source": "//billing.example.com",
            "type": event_type,
            "datacontenttype": "application/json",
        },
        data,
    )
    record = (ce_kafka.to_binary if binary else ce_kafka.to_structured)(event, JSONFormat())
    headers = tuple((name, bytes(value)) for name, value in record.headers.items())
    return bytes(record.value), headers


async def test_a_wait_takes_the_cloudevents_of_its_type_in_every_mode(store):
    wf = approvals()
    async with Engine(store, [wf]) as engine:
        runs = [await engine.start(wf, params={"invoice_id": f"inv-{i}"}) for i in range(3)]
        await until_waiting(engine, *runs)
        events = engine.topics.events
        # A CloudEvent of another type about inv-0 first: it resumes nothing.
        rejected = written("com.acme.invoice.rejected", "r-0", {"invoice_id": "inv-0"}, binary=True)
        binary = written(APPROVED, "a-0", {"invoice_id": "inv-0", "by": "ann"}, binary=True)
        structured = written(APPROVED, "a-1", {"invoice_id": "inv-1", "by": "bob"}, binary=False)
        await engine.log.append(
            [
                Message(events, value, key="inv", headers=headers)
                for value, headers in (rejected, binary, structured)
            ]
        )
        async with EventStore(engine, cloudevents=True) as published:
            await published.publish_async(APPROVED, {"invoice_id": "inv-2", "by": "cy"})
        results = [await run.result(timeout=60) for run in runs]
        await asyncio.sleep(0.3)  # time for a wrong resume to land, had there been one
        history = [await run.status() for run in runs]
    taken = [result.tasks["approval"].output for result in results]
    assert [r.status for r in results] == ["completed"] * 3, [r.error for r in results]
    assert [event["type"] for event in taken] == [APPROVED] * 3
    assert [event["data"]["by"] for event in taken] == ["ann", "bob", "cy"]
    # Another producer's CloudEvent keeps its own id and source.
    assert [(e["id"], e["source"]) for e in taken[:2]] == [
        ("a-0", "//billing.example.com"),
        ("a-1", "//billing.example.com"),
    ]
    assert all(state.status == "completed" for state in history)
