"""Event handlers subscribe by CloudEvents ``type``, exactly or by a ``*`` pattern, whether the
event was published by deerflow as a CloudEvent or written to the events topic by another
producer in the Kafka binding's structured or binary mode."""

from __future__ import annotations

from typing import Any

import pytest
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from deerflow import Engine, EventStore, Workflow
from deerflow._eventtypes import TypeFilter, type_matches
from deerflow.eventstore import Message
from tests.choreography.test_choreography import eventually


def cloudevent(type_: str, id_: str, data: Any) -> CloudEvent:
    return CloudEvent(
        {"id": id_, "source": "/shop", "type": type_, "datacontenttype": "application/json"},
        data,
    )


def record(topic: str, event: CloudEvent, *, binary: bool) -> Message:
    """``event`` as another producer writes it, with the SDK's Kafka binding."""
    write = ce_kafka.to_binary if binary else ce_kafka.to_structured
    written = write(event, JSONFormat())
    headers = tuple((name, bytes(value)) for name, value in written.headers.items())
    return Message(topic, bytes(written.value), key="order-1", headers=headers)


async def test_handlers_get_the_cloudevents_whose_type_they_name_in_every_mode(store):
    wf = Workflow(name="shop")
    seen: dict[str, list[tuple[str, str, Any]]] = {"orders": [], "cancelled": []}

    @wf.event_handler("com.acme.order.*")
    def orders(event):
        seen["orders"].append((event.type, event.source, event.data))

    @wf.event_handler("com.acme.order.cancelled")
    def cancelled(event):
        seen["cancelled"].append((event.type, event.source, event.data))

    async with Engine(store, [wf]) as engine:
        topic = engine.topics.events
        await engine.log.append(
            [
                record(topic, cloudevent("com.acme.order.created", "e1", {"n": 1}), binary=True),
                record(topic, cloudevent("com.acme.invoice.created", "e2", {"n": 2}), binary=True),
                record(topic, cloudevent("com.acme.order.cancelled", "e3", {"n": 3}), binary=False),
            ]
        )
        async with EventStore(engine, cloudevents=True) as published:
            await published.publish_async("com.acme.order.item.added", {"n": 4}, stream="order-1")
            await published.publish_async("OrderStarted", {"n": 5}, stream="order-1")
        await eventually(lambda: len(seen["orders"]) == 3 and len(seen["cancelled"]) == 1)
    assert sorted(seen["orders"])[:2] == [
        ("com.acme.order.cancelled", "/shop", {"n": 3}),
        ("com.acme.order.created", "/shop", {"n": 1}),
    ]
    assert [(t, data) for t, _, data in sorted(seen["orders"])[2:]] == [
        ("com.acme.order.item.added", {"n": 4})
    ]
    assert seen["cancelled"] == [("com.acme.order.cancelled", "/shop", {"n": 3})]


@pytest.mark.parametrize(
    ("pattern", "event_type", "matches"),
    [
        ("com.acme.order.created", "com.acme.order.created", True),
        ("com.acme.order.created", "com.acme.order.created.v2", False),
        ("com.acme.order.*", "com.acme.order.created", True),
        ("com.acme.order.*", "com.acme.order.item.added", True),
        ("com.acme.order.*", "com.acme.orders", False),
        ("com.acme.*.created", "com.acme.invoice.created", True),
        ("com.acme.*.created", "com.acme.invoice.paid", False),
        ("*", "OrderStarted", True),
        ("Order[1]", "Order1", False),  # only * is special
        ("Order[1]", "Order[1]", True),
    ],
)
def test_a_type_pattern_names_the_types_it_should(pattern, event_type, matches):
    assert type_matches(pattern, event_type) is matches
    assert TypeFilter([pattern])(event_type) is matches


def test_a_filter_of_no_types_takes_every_type():
    assert TypeFilter(None)("anything") and not TypeFilter([])("anything")
