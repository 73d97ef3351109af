"""Fuzzing the S3 notification parsing: anything on the queue is a run, a dead letter or nothing.

An SQS queue takes messages from anyone allowed to send, so the S3 trigger must survive every
body: arbitrary bytes, arbitrary JSON, and S3-shaped records whose fields have the wrong types.
Criteria: ``parse_body`` and ``to_event`` raise nothing but ``NotAnS3EventError``; the source's
whole pure path (parse, stale check, interpret) yields only storable run requests and dead
letters that encode.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deerflow import Engine, Workflow
from deerflow.connectors import DeadLetter, RunRequest, S3NotificationSource
from deerflow.connectors._letters import letter_message
from deerflow.connectors._s3records import (
    NotAnS3EventError,
    identity,
    matches,
    newest_by_key,
    parse_body,
    to_event,
)
from deerflow.connectors.base import unstorable
from deerflow.events import S3Event, S3ObjectEvent

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
anything = scalars | json_values


def nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


@st.composite
def s3_records(draw: st.DrawFn) -> dict[str, Any]:
    """Records shaped like S3's, each field possibly of a wrong type or missing."""
    obj = {
        name: draw(st.one_of(st.text(max_size=30), anything))
        for name in draw(
            st.lists(
                st.sampled_from(["key", "size", "eTag", "versionId", "sequencer"]), unique=True
            )
        )
    }
    if draw(st.booleans()):
        obj["key"] = draw(st.sampled_from(["incoming/a.csv", "incoming/b%2Fc+d.csv", "x.csv"]))
    if draw(st.booleans()):
        obj["size"] = draw(st.sampled_from(["12", "\u00b2", "-1", "1e3", 5, -5, True, 1.5]))
    bucket = draw(st.one_of(st.just({"name": "lake"}), anything))
    s3 = draw(st.one_of(st.just({"bucket": bucket, "object": obj}), anything))
    record: dict[str, Any] = {
        "s3": s3,
        "eventName": draw(
            st.one_of(st.sampled_from(["ObjectCreated:Put", "s3:ObjectRemoved:Delete"]), anything)
        ),
    }
    if draw(st.booleans()):
        record["eventTime"] = draw(anything)
    if draw(st.booleans()):
        record["deep"] = nested(draw(st.integers(90, 240)))  # orjson writes <= 254
    return record


@st.composite
def bodies(draw: st.DrawFn) -> bytes | str:
    """What may sit in an SQS message body."""
    kind = draw(st.sampled_from(["bytes", "json", "records", "sns", "test", "deep"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "deep":  # deeper than any encoder writes, as text
        depth = draw(st.integers(100, 1200))
        return b'{"Records": [{"s3": ' + b"[" * depth + b"]" * depth + b"}]}"
    if kind == "json":
        return orjson.dumps(draw(anything))
    records = draw(st.lists(st.one_of(s3_records(), anything), max_size=4))
    body = orjson.dumps({"Records": records} if kind != "test" else {"Event": "s3:TestEvent"})
    if kind == "sns":
        return orjson.dumps({"Type": "Notification", "Message": body.decode()})
    return body


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies())
def test_parsing_raises_nothing_but_not_an_s3_event(body: bytes | str) -> None:
    trigger = S3Event(bucket="lake", prefix="incoming/")
    try:
        parsed = parse_body(body)
    except NotAnS3EventError:
        return
    events: list[S3ObjectEvent] = []
    for record in parsed.records:
        try:
            events.append(to_event(record, "lake", 0.0))
        except NotAnS3EventError:
            continue
    for event in events:
        identity(event)
        matches(trigger, event)
    newest_by_key(events)


@pytest.fixture(scope="module")
def source() -> S3NotificationSource:
    wf = Workflow(name="on_file")
    wf.task(id="handle")(lambda context: None)
    engine = Engine("memory://s3-fuzz", [wf])  # never started: only the pure path is used
    return S3NotificationSource(
        engine, "on_file", S3Event(bucket="lake", prefix="incoming/", queue="q"), "lake"
    )


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.lists(bodies(), min_size=1, max_size=4))
def test_every_message_becomes_storable_runs_or_encodable_dead_letters(
    source: S3NotificationSource, messages: list[bytes | str]
) -> None:
    batch = [
        {
            "MessageId": str(i),
            "ReceiptHandle": str(i),
            "Body": b.decode("utf-8", "replace") if isinstance(b, bytes) else b,
        }
        for i, b in enumerate(messages)
    ]
    # What ``prepare`` does, without the ledger's I/O.
    source._parsed = {m["MessageId"]: source._parse(m, 0.0) for m in batch}
    source._newest = newest_by_key(
        e
        for p in source._parsed.values()
        for e in p
        if isinstance(e, S3ObjectEvent) and matches(source.trigger, e)
    )
    for message in batch:
        for action in source.interpret(message):
            if isinstance(action, RunRequest):
                assert unstorable(action) is None
            else:
                assert isinstance(action, DeadLetter)
                # Encodes, whatever the details hold.
                letter_message(source.engine, source.name, action, "id")
