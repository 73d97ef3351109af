"""Waits served by `deerflow worker` processes (SQLite, Kafka): kills, a timeout, 1,000 keys."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from deerflow import Engine, EventStore
from deerflow.matching import EventMatched
from tests.logs import history
from tests.matching.apps.approvals_app import brief, held, plain
from tests.matching.waits import results_within, until_waiting
from tests.processes import wait_for_file, workers  # noqa: F401 - fixture

APP = Path(__file__).parent / "apps" / "approvals_app.py"


async def test_a_kill_between_the_event_and_the_resume_resumes_once_elsewhere(store, workers):
    hold = Path(os.environ["HOLD_FILE"])
    hold.write_text("hold")
    workers.start(APP)
    workers.start(APP)
    await workers.wait_serving(2)
    async with Engine(store, [plain, held, brief], orchestrate=False, work=False) as client:
        run = await client.start(held, params={"invoice_id": "inv-1"})
        await until_waiting(client, run)
        await EventStore(client.log, topic=client.topics.events).publish_async(
            "InvoiceApproved", {"invoice_id": "inv-1", "by": "ann"}
        )
        started = Path(os.environ["STARTED_FILE"])
        await wait_for_file(started, timeout=60, pool=workers)
        victim = int(started.read_text())
        os.kill(victim, signal.SIGKILL)
        hold.unlink()
        result = await run.result(timeout=120)
        await asyncio.sleep(1.0)
        events = await history(client, run.run_id)
    assert result.status == "completed", result.error
    assert result.output == "ann"
    assert len([e for e in events if isinstance(e, EventMatched)]) == 1
    assert [e.type for e in events].count("TaskCompleted") == 2  # request and book, once each


# Its own bounded waits (180 s for the runs to wait, 300 s for their results) fail with what is
# missing; the suite's 120 s default cut it short on a loaded machine, saying nothing.
def notable(logs: str) -> str:
    """The lines of workers' logs that say what went wrong: warnings, errors, and loads."""
    marks = ("---", "WARNING", "ERROR", "Traceback", "Error", "owns ")
    return "\n".join(line for line in logs.splitlines() if any(m in line for m in marks))


@pytest.mark.timeout(420)
async def test_a_thousand_runs_wait_on_one_type_each_resumed_by_its_own_event(store, workers):
    workers.start(APP)
    workers.start(APP)
    await workers.wait_serving(2)
    count = 1000
    async with Engine(store, [plain, held, brief], orchestrate=False, work=False) as client:
        runs = [await client.start(plain, params={"invoice_id": f"inv-{i}"}) for i in range(count)]
        await until_waiting(
            client, *runs, timeout=180, why=lambda: "\n" + notable(workers.logs(chars=10**8))
        )
        events = EventStore(client.log, topic=client.topics.events)
        for i in reversed(range(count)):
            published = await events.publish_async(
                "InvoiceApproved", {"invoice_id": f"inv-{i}", "by": f"approver-{i}"}
            )
            if i % 10 == 0:  # a duplicate delivery of every tenth event
                await events.publish_async(
                    "InvoiceApproved", published.data, id=published.id, stream=published.stream
                )
        results = await results_within(
            client, runs, timeout=300, why=lambda: "\n" + notable(workers.logs(chars=10**8))
        )
        matched = [e for e in await history(client) if isinstance(e, EventMatched)]
    assert [r.output for r in results] == [f"approver-{i}" for i in range(count)]
    # One resume per run: duplicates of an event were dropped by the index or the fold.
    assert sorted({e.run_id for e in matched}) == sorted(r.run_id for r in results)


async def test_a_timeout_fires_once_after_the_process_that_started_it_was_killed(store, workers):
    victim = workers.start(APP)
    await workers.wait_serving(1)
    async with Engine(store, [plain, held, brief], orchestrate=False, work=False) as client:
        run = await client.start(brief, params={"invoice_id": "inv-1"})
        await until_waiting(client, run)
        victim.send_signal(signal.SIGKILL)  # its timer was armed in memory only
        victim.wait(timeout=10)
        workers.start(APP)
        result = await run.result(timeout=120)
        events = await history(client, run.run_id)
    assert result.status == "completed", result.error
    assert result.output is None  # timed out
    types = [e.type for e in events]
    assert types.count("TimerFired") == 1
    assert types.count("EventWaitTimedOut") == 1
