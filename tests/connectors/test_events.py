"""Pure parts of the triggers: specs, event models, S3 records, signatures, run ids."""

from __future__ import annotations

import time

import pytest
from pydantic import ValidationError

import deerflow.events as events
from deerflow.connectors import run_id_for, sign
from deerflow.connectors._auth import ApiKeys, presented_key, signature_problem
from deerflow.connectors._s3records import (
    NotAnS3EventError,
    identity,
    matches,
    parse_body,
    sequencer_value,
    to_event,
)
from deerflow.errors import DefinitionError
from deerflow.events import (
    CustomTriggerEvent,
    KafkaEvent,
    KafkaMessageEvent,
    S3Event,
    S3ObjectEvent,
    WebhookEvent,
    WebhookRequestEvent,
    parse_trigger_event,
    trigger_name,
)
from deerflow.runtime._context import TaskContext, TaskDispatch
from deerflow.serve import parse_since


def test_the_public_names_are_sorted_and_documented() -> None:
    assert events.__all__ == sorted(events.__all__)
    for name in events.__all__:
        assert getattr(events, name).__doc__, name


def test_trigger_specs_validate_what_they_are_given() -> None:
    with pytest.raises(DefinitionError, match=r"^WebhookEvent: path: .* start with '/'"):
        WebhookEvent(path="no-slash")
    with pytest.raises(DefinitionError, match="unsupported webhook method"):
        WebhookEvent(path="/x", method="BREW")
    with pytest.raises(DefinitionError, match="'prefix' and 'suffix'"):
        S3Event(bucket="b", filter={"glob": "*.csv"})
    with pytest.raises(DefinitionError) as typo:
        KafkaEvent(topci="orders")  # type: ignore[call-arg]
    assert str(typo.value) == (
        "KafkaEvent: 'topic' is required; unknown option 'topci' (options: batch_size, "
        "bootstrap_servers, consumer_group, dedupe_key, filter, name, payload_schema, "
        "start_from, topic)"
    )
    with pytest.raises(DefinitionError, match=r"^S3Event: wait_seconds: .* less than or equal"):
        S3Event(bucket="b", wait_seconds=60)
    assert WebhookEvent(path="/x", method="put").method == "PUT"
    assert "s3cr3t" not in repr(WebhookEvent(path="/x", signing_secrets=["s3cr3t"]))
    assert trigger_name("wf", KafkaEvent(topic="data-events")) == "wf.kafka.data-events"
    assert trigger_name("wf", WebhookEvent(path="/trigger/pipeline")) == (
        "wf.webhook.trigger.pipeline"
    )
    assert trigger_name("wf", S3Event(bucket="lake", name="mine")) == "mine"


def test_a_stored_trigger_dict_comes_back_as_its_model_in_the_task_context() -> None:
    stored = KafkaMessageEvent(
        message={"type": "new_data"}, topic="t", partition=1, offset=7, key="k"
    ).model_dump(mode="json")
    ctx = TaskContext(
        TaskDispatch(run_id="r", workflow="w", task_id="t", attempt=1, trigger=stored)
    )
    event = ctx.trigger_event
    assert isinstance(event, KafkaMessageEvent) and event.type == "kafka"
    assert event.message["type"] == "new_data" and event.offset == 7
    s3 = parse_trigger_event(S3ObjectEvent(bucket="b", key="k", event_name="e").model_dump())
    assert isinstance(s3, S3ObjectEvent) and (s3.bucket, s3.key) == ("b", "k")
    hook = parse_trigger_event(
        {"type": "webhook", "path": "/p", "method": "POST", "text": "{}", "body": {}}
    )
    assert isinstance(hook, WebhookRequestEvent) and hook.raw == "{}"
    other = parse_trigger_event({"type": "cron", "at": "midnight"})
    assert isinstance(other, CustomTriggerEvent) and other.at == "midnight"  # type: ignore[attr-defined]
    with pytest.raises(ValidationError):
        parse_trigger_event({"type": "kafka"})


def test_run_ids_are_stable_per_identity_and_url_safe() -> None:
    a = run_id_for("wf", "kafka", "g/t/0/5")
    assert a == run_id_for("wf", "kafka", "g/t/0/5")
    assert a != run_id_for("wf", "kafka", "g/t/0/6") != run_id_for("other", "kafka", "g/t/0/5")
    assert a.startswith("wf-kafka-") and a.replace("-", "").isalnum()
    assert run_id_for("wf", "webhook", None) != run_id_for("wf", "webhook", None)


def test_s3_bodies_keys_and_matching_follow_aws() -> None:
    assert parse_body('{"Service":"Amazon S3","Event":"s3:TestEvent"}').test
    for bad in ("nope", "[1]", '{"x": 1}'):
        with pytest.raises(NotAnS3EventError):
            parse_body(bad)
    record = {
        "eventName": "ObjectCreated:Put",
        "s3": {
            "bucket": {"name": "lake"},
            "object": {"key": "incoming/a+b%2Fc%3D1.parquet", "size": 3, "eTag": '"e1"'},
        },
    }
    event = to_event(record, "t", 0.0)
    assert event.key == "incoming/a b/c=1.parquet" and event.etag == "e1"
    assert event.event_name == "s3:ObjectCreated:Put" and event.size == 3
    trigger = S3Event(bucket="lake", prefix="incoming/", filter={"suffix": ".parquet"})
    assert matches(trigger, event)
    assert not matches(trigger.model_copy(update={"events": ("s3:ObjectRemoved:*",)}), event)
    assert not matches(trigger.model_copy(update={"bucket": "other"}), event)
    with pytest.raises(NotAnS3EventError):
        to_event({"s3": {"bucket": {}}}, "t", 0.0)
    versioned = event.model_copy(update={"version_id": "v1", "sequencer": "AA"})
    assert identity(versioned) != identity(event.model_copy(update={"sequencer": "AA"}))
    assert sequencer_value("0055AED6DCD90281E5") < sequencer_value("0055AED6DCD90281E6")
    assert sequencer_value("0055AED6DCD90281E5") < sequencer_value("0055AED6DCD90281E500A")


def test_signatures_and_keys_are_checked_strictly() -> None:
    body = b'{"a": 1}'
    now = time.time()
    assert signature_problem(sign(body, "s1"), body, ["s0", "s1"], tolerance=300) is None
    assert signature_problem(sign(body, "s1"), body + b" ", ["s1"], tolerance=300) == (
        "signature does not match"
    )
    old = sign(body, "s1", timestamp=int(now) - 400)
    assert "tolerance" in (signature_problem(old, body, ["s1"], tolerance=300) or "")
    assert signature_problem(None, body, ["s1"], tolerance=300) == "missing signature"
    keys = ApiKeys(["a", "b"])
    assert keys.accepts("b") and not keys.accepts("c") and not keys.accepts(None)
    assert not ApiKeys([]).accepts("")
    assert presented_key({"Authorization": "Bearer  tok "}) == "tok"
    assert presented_key({"Authorization": "Basic tok"}) is None


def test_since_takes_times_and_durations() -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 1, 2, tzinfo=UTC)
    assert parse_since("1h", now) == int(now.timestamp() * 1000) - 3_600_000
    assert parse_since("2026-01-01T00:00:00", now) == int(
        datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000
    )
