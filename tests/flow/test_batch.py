"""Batches: one run takes up to N runs of a key requested together, with every run's trigger
event (memory, SQLite, Kafka)."""

from __future__ import annotations

import asyncio
import itertools
import time

import aiohttp
import pytest

from deerflow import Batch, Concurrency, Debounce, DefinitionError, Engine, RateLimit, Workflow
from deerflow.connectors import WebhookGateway, sources_for
from deerflow.events import WebhookEvent
from deerflow.flow import BatchJoined, RunBatched
from tests.flow.checks import intervals, most_at_once, task_spans
from tests.logs import history


def batched(name: str, **options: object) -> Workflow:
    wf = Workflow(name, batch=Batch(key="params.account", **options))  # type: ignore[arg-type]

    @wf.task(id="charge")
    def charge(context):
        return [event["params"]["amount"] for event in context.trigger_events]

    return wf


async def test_a_full_batch_runs_once_with_every_runs_event(store):
    wf = batched("charges", max_size=3, timeout="1h")
    async with Engine(store, [wf]) as engine:
        runs = [await engine.start(wf, params={"account": "a1", "amount": i}) for i in range(1, 7)]
        results = await asyncio.gather(*(run.result(timeout=60) for run in runs))
        events = await history(engine)
    completed = [r for r in results if r.status == "completed"]
    assert len(completed) == 2
    assert sorted(len(r.output) for r in completed) == [3, 3]
    assert sorted(a for r in completed for a in r.output) == [1, 2, 3, 4, 5, 6]
    batched_runs = [r for r in results if r.status == "batched"]
    assert len(batched_runs) == 4
    into = {e.run_id: e.into for e in events if isinstance(e, RunBatched)}
    assert set(into.values()) == {r.run_id for r in completed}
    for result in batched_runs:
        assert result.error == f"in the batch of run {into[result.run_id]}"
        assert result.tasks["charge"].status == "pending"  # nothing of it ran
    joined = [e for e in events if isinstance(e, BatchJoined)]
    assert sorted(e.member["run_id"] for e in joined) == sorted(into)


async def test_a_batch_that_does_not_fill_runs_at_its_timeout(store):
    wf = batched("slow_charges", max_size=100, timeout="1s")
    async with Engine(store, [wf]) as engine:
        began = time.monotonic()
        runs = [await engine.start(wf, params={"account": "a1", "amount": i}) for i in range(1, 4)]
        other = await engine.start(wf, params={"account": "a2", "amount": 9})
        results = await asyncio.gather(*(run.result(timeout=60) for run in [*runs, other]))
        waited = time.monotonic() - began
    completed = [r for r in results if r.status == "completed"]
    assert sorted(r.output for r in completed) == [[1, 2, 3], [9]]
    assert [r.status for r in results].count("batched") == 2
    assert waited >= 1.0


def test_batch_options_are_checked_when_the_workflow_is_defined():
    with pytest.raises(DefinitionError, match="workflow 'x': batch max_size must be"):
        Workflow("x", batch=Batch(max_size=0, timeout="1s"))
    with pytest.raises(DefinitionError, match="workflow 'x': batch timeout 'soon'"):
        Workflow("x", batch=Batch(max_size=5, timeout="soon"))


async def test_webhook_requests_are_answered_each_and_reach_one_run_together(tmp_path):
    wf = Workflow("hooked", batch=Batch(max_size=3, timeout="1h"))
    wf.add_trigger(WebhookEvent(path="/hooks/orders"))

    @wf.task(id="total")
    def total(context):
        return [event.body["order"] for event in context.trigger_events]

    async with Engine(f"sqlite:///{tmp_path / 'hooks.db'}", [wf]) as engine:
        gateway = WebhookGateway(engine, port=0)
        for source in sources_for(engine, [wf], gateway=gateway):
            await engine.add_service(source)
        await engine.add_service(gateway)
        accepted = []
        async with aiohttp.ClientSession() as session:
            for order in ("o1", "o2", "o3"):
                url = f"{gateway.url}/hooks/orders"
                async with session.post(url, json={"order": order}) as reply:
                    assert reply.status == 202, await reply.text()  # its run is durable
                    accepted.append((await reply.json())["run_id"])
        results = [await engine.handle(rid).result(timeout=60) for rid in accepted]
    taken = [r for r in results if r.status == "completed"]
    assert len(taken) == 1
    assert sorted(taken[0].output) == ["o1", "o2", "o3"]
    assert sorted(r.status for r in results) == ["batched", "batched", "completed"]


async def test_batches_of_one_key_with_a_concurrency_limit_run_one_at_a_time(store):
    """Batch and concurrency on one key: a closed batch's run queues for the key's slot, so
    two batches of one account never run at once, and each still takes its runs."""
    wf = Workflow(
        "serial_charges",
        batch=Batch(max_size=2, timeout="1h", key="params.account"),
        concurrency=Concurrency(limit=1, key="params.account"),
    )

    @wf.task(id="charge")
    async def charge(context):
        await asyncio.sleep(0.3)
        return [event["params"]["amount"] for event in context.trigger_events]

    async with Engine(store, [wf]) as engine:
        runs = [await engine.start(wf, params={"account": "a1", "amount": i}) for i in range(1, 7)]
        results = await asyncio.gather(*(run.result(timeout=60) for run in runs))
        spans = await intervals(engine)
        ran = await task_spans(engine)
    completed = [r for r in results if r.status == "completed"]
    assert sorted(a for r in completed for a in r.output) == [1, 2, 3, 4, 5, 6]
    assert sorted(len(r.output) for r in completed) == [2, 2, 2]
    [found] = spans.values()
    assert len(found) == 3
    assert most_at_once(found) == 1  # the limit held between batches
    bodies = sorted(ran[r.run_id] for r in completed)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(bodies))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"debounce": Debounce(period="1s")},
            "workflow 'x': batch cannot be combined with debounce",
        ),
        (
            {"rate_limit": RateLimit(limit=1, period="1m", on_excess="drop")},
            "workflow 'x': batch cannot be combined with rate_limit(on_excess='drop')",
        ),
        (
            {"concurrency": Concurrency(limit=1, key="params.other")},
            "workflow 'x': concurrency and batch must share one key",
        ),
    ],
)
def test_a_batch_with_an_option_it_does_not_combine_with_is_refused_naming_the_workflow(
    options, message
):
    with pytest.raises(DefinitionError) as raised:
        Workflow("x", batch=Batch(max_size=2, timeout="1s", key="params.account"), **options)
    assert str(raised.value).startswith(message)
