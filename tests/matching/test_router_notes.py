"""After a restart, the router still retires the waits of runs that end: its note of open
waits is rebuilt from the matching topic (on SQLite and Kafka)."""

from __future__ import annotations

import orjson
import pytest

from deerflow import Engine
from deerflow.matching import Matcher, Router
from deerflow.matching._notes import OpenWaits
from tests.matching.waits import invoices, until_waiting
from tests.rebuilding import topic_records, until, until_rebuilt


def matcher_of(engine: Engine) -> Matcher:
    return next(s for s in engine.services if isinstance(s, Matcher))


def router_of(engine: Engine) -> Router:
    return next(s for s in engine.services if isinstance(s, Router))


async def until_noted(engine: Engine) -> Router:
    """The engine's router, once it routes history with its notes rebuilt."""
    router = router_of(engine)

    async def ready() -> bool:
        consumer = router._consumer
        return (
            consumer is not None
            and bool(consumer.assignment())
            and not getattr(router, "_noting", {})
        )

    await until(ready, "the router's history partitions stayed paused")
    return router


async def registrations(matcher: Matcher) -> dict[str, str]:
    """Run id -> the id of its wait, from the registrations in the matching topic."""
    return {
        body["run"]: body["id"]
        for records in (await topic_records(matcher)).values()
        for body in map(orjson.loads, (r.value for r in records))
        if body["k"] == "wait"
    }


async def ended_waits(matcher: Matcher) -> set[str]:
    """Ids of the waits with an ``end`` record in the matching topic."""
    return {
        orjson.loads(r.value)["id"]
        for records in (await topic_records(matcher)).values()
        for r in records
        if b'"k":"end"' in r.value
    }


async def test_a_run_ending_after_a_restart_retires_its_waits_from_the_index(store):
    if store.startswith("memory"):
        pytest.skip("an in-memory store does not outlive its engine")
    wf = invoices(timeout="1h")
    async with Engine(store, [wf]) as engine:
        runs = [await engine.start(wf, params={"invoice_id": f"inv-{n}"}) for n in range(4)]
        await until_waiting(engine, *runs)
        first = await until_rebuilt(engine, Matcher)

        async def registered() -> bool:
            return sum(map(len, first.indexes.values())) == len(runs)

        await until(registered, "the waits were not registered")
    async with Engine(store, [wf]) as engine:
        router = await until_noted(engine)
        noted = {run.run_id: [w for w, _ in router.notes.waits(run.run_id)] for run in runs}
        for run in runs[:3]:
            await engine.cancel(run.run_id)
        matcher = await until_rebuilt(engine, Matcher)
        registered_ids = await registrations(matcher)

        async def retired() -> bool:
            return sum(map(len, matcher.indexes.values())) == 1

        await until(retired, "the cancelled runs' waits stayed in the index")
        ended = await ended_waits(matcher)
    assert noted == {run: [registered_ids[run]] for run in noted}
    assert ended == {registered_ids[run.run_id] for run in runs[:3]}


def test_the_note_is_bounded_and_notes_a_wait_told_twice_once():
    notes = OpenWaits(limit=2)
    notes.remember("r1", "w1", "k1")
    notes.remember("r1", "w1", "k1")  # routed again (its history read again after a restart)
    assert notes.waits("r1") == [("w1", "k1")]
    notes.remember("r2", "w2", "k2")
    notes.remember("r3", "w3", "k3")
    assert len(notes) == 2 and notes.waits("r1") == []  # the oldest run dropped
    assert notes.retire("r2", None) == [("w2", "k2")] and len(notes) == 1


async def test_runs_ending_after_a_takeover_retire_their_waits_from_the_index(store):
    if store.startswith("sqlite"):
        pytest.skip("engines share an SQLite file's groups across processes, not in one")
    wf = invoices(timeout="1h")
    async with Engine(store, [wf]) as first:
        runs = [await first.start(wf, params={"invoice_id": f"inv-{n}"}) for n in range(8)]
        await until_waiting(first, *runs)
        async with Engine(store, [wf]) as second:  # on the same log: it takes partitions over
            router = router_of(second)

            def moved() -> set[int]:
                consumer = router._consumer
                held = consumer.assignment() if consumer is not None else frozenset()
                return {tp.partition for tp in held if tp.topic == second.topics.history}

            async def took_over() -> bool:
                # it routes some runs' history now, and noted their open waits (Kafka may
                # rebalance more than once as the engines' members join)
                noted = [run for run in runs if router.notes.waits(run.run_id)]
                return bool(moved()) and not router._noting and bool(noted)

            await until(took_over, "the second router noted no open wait of the runs it took")
            for run in runs:
                await first.cancel(run.run_id)
            matchers = [matcher_of(first), matcher_of(second)]

            async def retired() -> bool:
                return sum(len(i) for m in matchers for i in m.indexes.values()) == 0

            await until(retired, "the cancelled runs' waits stayed in the index")
            waits = await registrations(matchers[1])
            ended = await ended_waits(matchers[1])
    assert set(waits) == {run.run_id for run in runs}
    assert ended == set(waits.values())  # every run's wait retired, whoever routed its end


def test_a_run_with_several_waits_retires_each_and_then_all():
    notes = OpenWaits()
    for wait in ("w1", "w2", "w3"):
        notes.remember("r", wait, f"k-{wait}")
    notes.remember("r", "w2", "k-w2")  # told twice
    assert notes.waits("r") == [("w1", "k-w1"), ("w2", "k-w2"), ("w3", "k-w3")]
    assert notes.retire("r", "w2") == [("w2", "k-w2")]
    assert notes.retire("r", "w1") == [("w1", "k-w1")]
    assert notes.waits("r") == [("w3", "k-w3")]
    notes.remember("r", "w4", "k-w4")
    assert notes.retire("r", None) == [("w3", "k-w3"), ("w4", "k-w4")]
    assert notes.waits("r") == [] and len(notes) == 0 and notes.retire("r", None) == []
