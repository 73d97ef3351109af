"""One dead letter per input, whoever writes it again: the same batch, a later batch, another
process on the same store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deerflow import Engine
from deerflow.connectors import DeadLetter, TriggerSource
from deerflow.connectors._letters import excerpt, letter_id
from tests.connectors.conftest import dead_letters


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
