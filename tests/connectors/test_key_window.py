"""A wait's webhook keys are kept for a window: a restart reads that window, not every key."""

from __future__ import annotations

import pytest

from deerflow import Engine
from deerflow.connectors import WebhookGateway
from deerflow.connectors._bodykeys import BodyKeys
from deerflow.connectors._ledger import STORE_STEP
from deerflow.errors import ConnectorError
from tests.engine.conftest import store

__all__ = ["store"]

DAY = 86_400.0
WINDOW = 3 * DAY


class Clock:
    """The time the keys are stamped with and expire by, moved by the test."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


async def bound(engine: Engine, clock: Clock, key: str, digest: str) -> tuple[str, int]:
    """What a freshly started gateway's store binds ``key`` to, and the records it read."""
    keys = BodyKeys(engine, window=WINDOW, clock=clock)
    kept = await keys.bind(key, digest)
    await keys.ledger.stop()
    return kept, keys.ledger.records_read


async def test_a_restart_reads_the_window_s_keys_not_every_key_ever_sent(store):
    clock = Clock()
    many = 8 * STORE_STEP  # spread over the topic's partitions: more than a step in each
    async with Engine(store, []) as engine:
        keys = BodyKeys(engine, window=WINDOW, clock=clock)
        await keys.bind("old-0", "first")  # starts the store
        await keys.ledger.put({f"old-{n}": "first" for n in range(1, many)})
        clock.now += WINDOW + 120  # past the window: the old keys expired
        for n in range(5):
            await keys.bind(f"new-{n}", "first")
        await keys.ledger.stop()
        kept_new, read = await bound(engine, clock, "new-1", "other")
        kept_old, _ = await bound(engine, clock, "old-1", "other")
    assert kept_new == "first"  # a key inside the window keeps its first body after a restart
    assert kept_old == "other"  # an expired key is bound anew
    assert read <= 10, f"a restart read {read} records of {many + 5}"


async def test_a_key_sent_again_inside_the_window_keeps_its_body_after_it_is_bound_anew(store):
    clock = Clock()
    async with Engine(store, []) as engine:
        keys = BodyKeys(engine, window=WINDOW, clock=clock)
        first = await keys.bind("delivery-1", "ann")
        clock.now += WINDOW - DAY  # a sender retrying two days later
        inside = await keys.bind("delivery-1", "eve")
        after_restart, _ = await bound(engine, clock, "delivery-1", "eve")
        clock.now += 2 * DAY  # three days and more after it was first sent
        expired = await keys.bind("delivery-1", "eve")
        clock.now += DAY
        rebound, _ = await bound(engine, clock, "delivery-1", "ann")
        await keys.ledger.stop()
    assert (first, inside, after_restart) == ("ann", "ann", "ann")
    assert expired == "eve"  # bound anew, to the body it came with
    assert rebound == "eve"  # and that binding holds across a restart


async def test_a_gateway_takes_its_key_window_from_the_config_and_refuses_a_bad_one():
    async with Engine("memory://", []) as engine:
        configured = WebhookGateway(engine, port=0, config={"key_window": "3d"})
        given = WebhookGateway(engine, port=0, key_window=60)
        default = WebhookGateway(engine, port=0)
        with pytest.raises(ConnectorError) as bad:
            WebhookGateway(engine, port=0, config={"key_window": "soon"})
    assert configured.key_window == WINDOW
    assert given.key_window == 60
    assert default.key_window == 7 * DAY
    assert str(bad.value) == (
        "[gateway] key_window 'soon' is not a duration: use e.g. 30d, 12h, 90m, 45s or seconds"
    )
