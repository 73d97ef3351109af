"""Guarantee: bad input is dead-lettered once, with its reason, and never blocks a partition.

A Kafka topic carries good messages mixed with poison: not JSON, bad UTF-8, a schema
violation, JSON nested too deeply to parse, JSON that parses but nests too deeply to store, a
message the trigger's filter raises on, and messages whose task always raises. Criteria: each
poison message is in the dead-letter topic exactly once with the expected reason; every good
message started exactly one run, which completed; a message whose task always raises ends as a
``failed`` run (after its retry), which is not a dead letter; the history checker passes.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from pydantic import BaseModel

from deerflow import Engine, Workflow
from deerflow.connectors import run_id_for, sources_for
from deerflow.events import KafkaEvent
from tests.engine.apps.sink import Sink
from tests.reliability.history_checker import check_log
from tests.reliability.support import all_finished, dead_letters
from tests.services import unique_name

pytestmark = pytest.mark.kafka


class NewData(BaseModel):
    """The schema of the topic's messages."""

    type: str
    n: int
    explode: bool = False
    payload: Any = None


def nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


def only_new_data(msg: dict[str, Any]) -> bool:
    """The trigger's filter; it raises on negative numbers (a buggy filter)."""
    if msg["n"] < 0:
        raise ValueError(f"negative n {msg['n']}")
    return bool(msg["type"] == "new_data")


POISON: dict[str, tuple[bytes, str]] = {
    "not JSON": (b"{oops", "not JSON: '{oops'"),
    "bad UTF-8": (b'{"type": "new_data", "n": "\xff\xfe"}', 'not JSON: \'{"type"'),
    "schema violation": (
        orjson.dumps({"type": "new_data", "n": "seven"}),
        "does not match the schema",
    ),
    "too deep to parse": (b"[" * 2000 + b"]" * 2000, "nested too deeply to read: '[[["),
    "too deep to store": (
        orjson.dumps({"type": "new_data", "n": 1, "payload": nested(198)}),
        "cannot be stored",
    ),
    "filter raises": (orjson.dumps({"type": "new_data", "n": -1}), "filter raised ValueError"),
}


def ingest_workflow(sink: Sink) -> Workflow:
    """Records each message's effect; messages marked ``explode`` always raise."""
    wf = Workflow(name="ingest")

    @wf.task(id="handle", retries=1, retry_delay=0.01)
    def handle(context: Any) -> int:
        message = context.trigger_event.message
        if message["explode"]:
            raise RuntimeError(f"handler refuses message {message['n']}")
        sink.record(context.idempotency_key, context.attempt)
        return int(message["n"])

    return wf


def stream(rng: random.Random, good: int, bad_share: float) -> list[tuple[str, bytes]]:
    """Good messages, some filtered-out ones, poison of every kind, exploding ones; shuffled."""
    kinds = list(POISON)
    bad = max(len(kinds) + 2, round(good * bad_share))
    items = [("good", orjson.dumps({"type": "new_data", "n": i})) for i in range(good)]
    items += [("other", orjson.dumps({"type": "other", "n": i})) for i in range(good // 20)]
    for i in range(bad):
        if i % (len(kinds) + 2) < len(kinds):
            kind = kinds[i % (len(kinds) + 2)]
            items.append((kind, POISON[kind][0]))
        else:
            items.append(
                ("explode", orjson.dumps({"type": "new_data", "n": 10**6 + i, "explode": True}))
            )
    rng.shuffle(items)
    return items


@pytest.fixture
async def engine(sink: Sink) -> AsyncIterator[Engine]:
    async with Engine(f"memory://{unique_name('log')}", [ingest_workflow(sink)]) as eng:
        yield eng


async def produce(
    bootstrap: str, topic: str, items: list[tuple[str, bytes]], rng: random.Random
) -> dict[tuple[int, int], str]:
    """Send ``items``; return the kind of the message at each (partition, offset)."""
    placed: dict[tuple[int, int], str] = {}
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        sent = [
            (kind, await producer.send(topic, value, key=str(rng.random()).encode()))
            for kind, value in items
        ]
        for kind, future in sent:
            meta = await future
            placed[(meta.partition, meta.offset)] = kind
    finally:
        await producer.stop()
    return placed


async def poison_among_good_messages(
    engine: Engine, sink: Sink, rng: random.Random, bootstrap: str, url: str, good: int
) -> None:
    topic, group = unique_name("data-events"), unique_name("g")
    wf = ingest_workflow(sink)
    wf.add_trigger(
        KafkaEvent(
            topic=topic,
            consumer_group=group,
            bootstrap_servers=url,
            filter=only_new_data,
            payload_schema=NewData,
            batch_size=50,
        )
    )
    placed = await produce(bootstrap, topic, stream(rng, good, 0.01), rng)
    (source,) = sources_for(engine, [wf])
    await engine.add_service(source)
    starting = {where: kind for where, kind in placed.items() if kind in ("good", "explode")}
    await all_finished(engine, len(starting), within=120)

    letters = await dead_letters(engine)
    lettered = [(d["partition"], d["offset"]) for d in letters]
    assert len(lettered) == len(set(lettered)), "a message was dead-lettered twice"
    poisoned = {where: kind for where, kind in placed.items() if kind in POISON}
    assert set(lettered) == set(poisoned)
    for letter in letters:
        kind = poisoned[(letter["partition"], letter["offset"])]
        assert POISON[kind][1] in letter["reason"], (kind, letter["reason"])

    expected = {
        run_id_for(wf.name, "kafka", f"{group}/{topic}/{p}/{o}"): kind
        for (p, o), kind in starting.items()
    }
    history = await check_log(engine.log, engine.topics.history)
    print(f"{len(placed)} messages, {len(letters)} dead letters: {history.summary()}")
    history.assert_ok(expected, status=None, exact=True)
    assert {rid: run.status for rid, run in history.runs.items()} == {
        rid: "completed" if kind == "good" else "failed" for rid, kind in expected.items()
    }
    assert sink.effects() == sum(1 for kind in starting.values() if kind == "good")


async def test_poison_messages_are_dead_lettered_once_and_good_ones_all_run(
    engine, sink, rng, kafka_bootstrap, kafka_url
):
    await poison_among_good_messages(engine, sink, rng, kafka_bootstrap, kafka_url, good=300)


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_full_size_one_percent_poison_in_5000_messages(
    engine, sink, rng, kafka_bootstrap, kafka_url
):
    await poison_among_good_messages(engine, sink, rng, kafka_bootstrap, kafka_url, good=5000)
