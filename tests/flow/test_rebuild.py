"""After a restart, a gate is rebuilt from the records its live keys need, not from the start
of the flow topic: on SQLite and Kafka."""

from __future__ import annotations

import asyncio

import pytest

from deerflow import Engine, RunHandle, Workflow
from deerflow.flow import Gate
from tests.flow.apps import limited
from tests.flow.checks import until_admitted, until_status
from tests.rebuilding import (  # noqa: F401 - lasting_store: a fixture
    lasting_store,
    records_read,
    topic_records,
    topic_size,
    until,
    until_rebuilt,
    until_stored,
)

REREAD = 10
ENDED = 20
#: runs of other keys after the live ones (spread over the partitions, enough in each to move
#: its window past the live runs)
OTHERS = 100


@pytest.fixture(autouse=True)
def small_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """A rebuild reads the last REREAD records at least."""
    monkeypatch.setattr(Gate, "reread", REREAD)


async def many_ended_runs(store: str) -> tuple[Workflow, RunHandle, RunHandle, int]:
    """ENDED runs of one key ran one at a time and ended; then one runs long and one waits
    for it; then OTHERS runs of other keys ran and ended (the two live runs are older than the
    window). The engine stops once each partition's rebuild offset moved; the records the flow
    topic holds then."""
    wf = limited("gated", limit=1, seconds=0.0)
    async with Engine(store, [wf]) as engine:
        gate = await until_rebuilt(engine, Gate)
        for n in range(ENDED):
            run = await engine.start(wf, params={"customer": "c", "n": n})
            assert (await run.result(timeout=60)).status == "completed"
        holder = await engine.start(wf, params={"customer": "c", "seconds": 3600})
        await until_admitted(engine, holder)
        waiter = await engine.start(wf, params={"customer": "c", "n": "w"})
        await until_status(waiter, "queued")
        others = [await engine.start(wf, params={"customer": f"o{n}"}) for n in range(OTHERS)]
        for run in others:
            assert (await run.result(timeout=60)).status == "completed"
        await until_stored(gate)
        total = await topic_size(gate)
    return wf, holder, waiter, total


async def test_a_restart_after_many_ended_runs_rebuilds_only_what_is_live(lasting_store):
    wf, holder, waiter, total = await many_ended_runs(lasting_store)
    async with Engine(lasting_store, [wf]) as engine:
        gate = await until_rebuilt(engine, Gate)
        read = records_read(gate)
        held = (gate.admitted_runs(), gate.queued_runs())
        await asyncio.sleep(1.0)  # time for a gate that forgot the holder to admit the waiter
        still = await engine.handle(waiter.run_id).status()
        await engine.cancel(holder.run_id)
        result = await engine.wait(waiter.run_id, timeout=60)
    assert read < total  # the records of runs that ended before the window are not read
    assert held == (1, 1)  # the run holding the key's one slot, and the one waiting for it
    assert still.status == "queued"  # the limit still holds after the restart
    assert result.status == "completed", result.error
    assert result.output == "w"  # admitted once the slot was freed


async def test_a_key_that_never_goes_idle_does_not_hold_its_rebuild_back(lasting_store):
    """One run holds a slot of its key for the whole test while ENDED runs go through the
    other one: the key is never idle, yet its carry record lets the rebuild offset move past
    its first records, and after a restart the limit still counts the holder."""
    wf = limited("busy", limit=2, seconds=0.0)
    async with Engine(lasting_store, [wf]) as engine:
        gate = await until_rebuilt(engine, Gate)
        holder = await engine.start(wf, params={"customer": "c", "seconds": 3600})
        await until_admitted(engine, holder)
        for n in range(ENDED):
            run = await engine.start(wf, params={"customer": "c", "n": n})
            assert (await run.result(timeout=60)).status == "completed"
        [(partition, first)] = [
            (tp.partition, rs[0].offset)
            for tp, rs in (await topic_records(gate)).items()
            if rs and rs[0].key == "busy/c"
        ]

        async def moved() -> bool:
            return gate._stored.get(partition, 0) > first

        await until(moved, "no rebuild offset moved past the holder's request")
        total = await topic_size(gate)
    async with Engine(lasting_store, [wf]) as engine:
        gate = await until_rebuilt(engine, Gate)
        read = sum(records for _, records in gate.rebuilds.values())
        assert gate.admitted_runs() == 1  # the holder, from its key's carry record
        second = await engine.start(wf, params={"customer": "c", "seconds": 3600})
        await until_admitted(engine, second)
        third = await engine.start(wf, params={"customer": "c", "n": "third"})
        await until_status(third, "queued")
        await asyncio.sleep(1.0)  # time for a gate that forgot the holder to admit it
        still = await third.status()
        await engine.cancel(holder.run_id)
        result = await engine.wait(third.run_id, timeout=60)
        await engine.cancel(second.run_id)
    assert read < total
    assert still.status == "queued"  # two running: the limit holds after the restart
    assert result.status == "completed", result.error
