"""After a restart, a partition's index is rebuilt from the records its live waits need, not
from the start of the matching topic: on SQLite and Kafka."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from deerflow import Engine, RunHandle, Workflow
from deerflow.choreography import publish_event_async
from deerflow.log.base import Message
from deerflow.matching import EventMatched, Matcher
from deerflow.runtime.rebuild import rebuild_group
from tests.logs import history
from tests.matching.waits import invoices, until_waiting
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
ENDED = 40
LIVE = 5


@pytest.fixture(autouse=True)
def small_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """A rebuild reads the last REREAD records at least; events leave the buffer in 1 s."""
    monkeypatch.setattr(Matcher, "reread", REREAD)
    monkeypatch.setattr(Matcher, "buffer_seconds", 1.0)


def waits_held(matcher: Matcher) -> int:
    """How many waits the matcher's indexes hold, over its partitions."""
    return sum(map(len, matcher.indexes.values()))


async def many_ended_waits(store: str) -> tuple[Workflow, RunHandle, list[RunHandle], int]:
    """An engine whose runs waited: the oldest and LIVE still wait, ENDED were approved; it
    stops once each partition's rebuild offset moved. The records the matching topic holds."""
    wf = invoices(timeout="1h")
    async with Engine(store, [wf]) as engine:
        matcher = await until_rebuilt(engine, Matcher)
        oldest = await engine.start(wf, params={"invoice_id": "oldest"})
        ended = [await engine.start(wf, params={"invoice_id": f"e{n}"}) for n in range(ENDED)]
        live = [await engine.start(wf, params={"invoice_id": f"l{n}"}) for n in range(LIVE)]
        await until_waiting(engine, oldest, *ended, *live)
        for n in range(ENDED):
            await publish_event_async(
                "InvoiceApproved", {"invoice_id": f"e{n}", "by": "ann"}, store=engine
            )
        for run in ended:
            assert (await run.result(timeout=60)).status == "completed"
        await until_stored(matcher, also=lambda: waits_held(matcher) == 1 + LIVE)
        total = await topic_size(matcher)
    return wf, oldest, ended, total


async def test_a_restart_after_many_ended_waits_rebuilds_only_what_is_live(lasting_store):
    wf, oldest, _, total = await many_ended_waits(lasting_store)
    async with Engine(lasting_store, [wf]) as engine:
        matcher = await until_rebuilt(engine, Matcher)
        read = records_read(matcher)
        held = waits_held(matcher)
        await publish_event_async(
            "InvoiceApproved", {"invoice_id": "oldest", "by": "bob"}, store=engine
        )
        result = await engine.wait(oldest.run_id, timeout=60)
    assert held == 1 + LIVE  # the live waits, the oldest among them, none that ended
    assert read < total  # the records of waits that ended before the window are not read
    assert result.status == "completed", result.error
    assert result.output == "bob"  # the oldest wait, registered long before, still resumes


async def test_a_registration_delivered_again_within_the_window_is_still_recognised(
    lasting_store,
):
    wf, _, ended, _ = await many_ended_waits(lasting_store)
    last = ended[-1].run_id
    async with Engine(lasting_store, [wf]) as engine:
        matcher = await until_rebuilt(engine, Matcher)
        *_, registration = [  # (written again once, maybe, while it waited long)
            r
            for rs in (await topic_records(matcher)).values()
            for r in rs
            if b'"k":"wait"' in r.value and f'"run":"{last}"'.encode() in r.value
        ]
        # The router delivers the registration again (it was stopped before its commit).
        await engine.log.append([Message(registration.topic, registration.value, registration.key)])
        await asyncio.sleep(1.0)  # time for the index to read it
        held = waits_held(matcher)
        await publish_event_async(
            "InvoiceApproved", {"invoice_id": f"e{ENDED - 1}", "by": "bob"}, store=engine
        )
        await asyncio.sleep(1.0)  # time for a second resume to land
        events = await history(engine, last)
    assert held == 1 + LIVE  # the ended wait did not come back
    assert len([e for e in events if isinstance(e, EventMatched)]) == 1


async def test_a_wait_written_again_after_it_ended_does_not_come_back_in_a_later_rebuild(
    lasting_store,
):
    wf = invoices(timeout="1h")
    key = '["InvoiceApproved",["data.invoice_id"],["gone"]]'
    body = {"k": "wait", "id": "w-gone", "run": "r-gone", "since": 0.0, "deadline": None}
    async with Engine(lasting_store, [wf]) as engine:
        matcher = await until_rebuilt(engine, Matcher)
        # The wait, its end, then its registration written again by a carry that began
        # before the end was read: the copy lands after the end.
        placed = await engine.log.append(
            [
                Message(matcher.topic, orjson.dumps(value), key)
                for value in (body, {"k": "end", "id": "w-gone"}, body)
            ]
        )
        tp, copy = placed[-1]

        async def ended_again() -> bool:
            records = (await topic_records(matcher))[tp]
            return any(r.offset > copy and b'"end"' in r.value for r in records) and (
                matcher._heads.get(tp.partition, 0) > copy + 1
            )

        await until(ended_again, "no end was written after the copy")
        held = len(matcher.indexes[tp.partition])
        # A later rebuild starts just after the end, at the copy (the window moved on).
        await engine.log.commit_group(rebuild_group(matcher.topic), {tp: copy})
    async with Engine(lasting_store, [wf]) as engine:
        rebuilt = await until_rebuilt(engine, Matcher)
        revived = [len(index) for index in rebuilt.indexes.values()]
    assert held == 0
    assert revived == [0] * len(revived)
