"""One dead letter per input, whoever writes it again: the same batch, a later batch, another
process on the same store."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from deerflow import Engine
from deerflow.connectors import DeadLetter, TriggerSource
from deerflow.connectors._letters import excerpt, letter_id
from tests.connectors.conftest import dead_letters
from tests.connectors.serving import ROOT, write_app
from tests.services import unique_name


class Letters(TriggerSource[Any]):
    """A source that only writes the letters it is given."""

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass


def letter(key: str | None) -> DeadLetter:
    return DeadLetter(
        reason="not JSON: 'tru'", source="test", key=key, details={"workflow": "orders"}
    )


async def test_an_input_gets_one_dead_letter_however_often_it_is_dead_lettered(
    tmp_path: Path,
) -> None:
    store = f"sqlite:///{tmp_path / 'events.db'}"
    async with Engine(store, orchestrate=False, work=False) as engine:
        source = Letters(engine, "orders.kafka.t")
        await source.submit([letter("t/0/5"), letter("t/0/5"), letter("t/0/6")])
        await source.submit([letter("t/0/5")])  # a replay
        await source.submit([letter(None), letter(None)])  # no identity: each is its own
        assert source.dead_lettered == 4
    async with Engine(store, orchestrate=False, work=False) as engine:  # another process
        await Letters(engine, "orders.kafka.t").submit([letter("t/0/6"), letter("t/0/7")])
        await Letters(engine, "billing.kafka.t").submit([letter("t/0/5")])  # another trigger
        letters = await dead_letters(engine)
    written = sorted((x["trigger"], x["id"]) for x in letters)
    keyed = sorted(
        (trigger, letter_id(trigger, key))
        for trigger, key in [
            ("orders.kafka.t", "t/0/5"),
            ("orders.kafka.t", "t/0/6"),
            ("orders.kafka.t", "t/0/7"),
            ("billing.kafka.t", "t/0/5"),
        ]
    )
    assert len(written) == 6 and set(keyed) <= set(written), written


def test_an_excerpt_quotes_the_start_of_an_input_and_says_its_size_when_cut() -> None:
    assert excerpt(b"tru") == "'tru'"
    assert excerpt(b"x" * 100, limit=4) == "'xxxx'... (100 bytes)"
    assert excerpt(b"\xff{") == "'\ufffd{'"


@pytest.mark.kafka
def test_a_replayed_poison_message_gets_no_second_dead_letter_and_the_log_names_the_trigger(
    tmp_path: Path, kafka_url: str, kafka_bootstrap: str, cli_env: dict[str, str]
) -> None:
    topic = unique_name("orders")
    app = write_app(tmp_path, "orders", f"KafkaEvent(topic={topic!r})")
    store = f"sqlite:///{tmp_path / 'events.db'}"

    async def publish() -> None:
        async with AIOKafkaProducer(bootstrap_servers=kafka_bootstrap) as producer:
            await producer.send_and_wait(topic, b"tru", partition=0)
            await producer.send_and_wait(topic, b'{"n": 1}', partition=0)

    async def letters() -> list[dict[str, object]]:
        async with Engine(store, orchestrate=False, work=False) as engine:
            return await dead_letters(engine)

    asyncio.run(publish())
    name = f"orders.kafka.{topic}"
    replay = [sys.executable, "-m", "deerflow", "triggers", "replay", name, "--app", str(app)]
    outputs = []
    for _ in range(2):
        done = subprocess.run(
            [*replay, "--store", store, "--from-offset", "0"],
            capture_output=True,
            text=True,
            env=dict(cli_env, DEERFLOW_KAFKA_BOOTSTRAP=kafka_url),
            cwd=ROOT,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        outputs.append(done.stderr)
    assert (
        f"workflow orders, trigger {name}: dead-lettering input {topic}/0/0: not JSON: 'tru'"
        in outputs[0]
    ), outputs[0]
    assert "dead-lettering" not in outputs[1], outputs[1]
    assert f"trigger {name}: input {topic}/0/0 has a dead letter already" in outputs[1]
    (letter,) = asyncio.run(letters())
    assert letter["reason"] == "not JSON: 'tru'" and letter["offset"] == 0
    assert letter["trigger"] == name and letter["workflow"] == "orders"
