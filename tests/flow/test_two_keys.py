"""A concurrency limit and a rate limit of two different keys: a run passes the concurrency
gate, then the rate limit's, each holding its limit (memory, SQLite, Kafka)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

from deerflow import Concurrency, Engine, RateLimit, Workflow
from deerflow.core import history as h
from deerflow.core.fold import fold_all
from deerflow.core.fold_registry import status_of
from deerflow.flow import FlowReleased, RunAdmitted, RunQueued
from deerflow.flow._fold import admitted_id, queued_id
from tests.flow.checks import most_at_once, task_spans
from tests.logs import history


def two_keys(
    name: str, *, limit: int, rate: int, period: float, on_excess: str = "delay"
) -> Workflow:
    wf = Workflow(
        name,
        concurrency=Concurrency(limit=limit, key="params.customer"),
        rate_limit=RateLimit(limit=rate, period=period, key="params.region", on_excess=on_excess),  # type: ignore[arg-type]
    )

    @wf.task(id="work")
    async def work(context: Any) -> Any:
        await asyncio.sleep(context.params.get("seconds", 0.3))
        return context.params["n"]

    return wf


async def test_a_run_holds_its_customers_slot_and_starts_within_its_regions_rate(store):
    wf = two_keys("per_customer_and_region", limit=2, rate=3, period=1.0)
    async with Engine(store, [wf]) as engine:
        runs = [
            await engine.start(wf, params={"customer": f"c{i % 2}", "region": f"r{i % 3}", "n": i})
            for i in range(12)
        ]
        results = await asyncio.gather(*(run.result(timeout=120) for run in runs))
        events = await history(engine)
        ran = await task_spans(engine)
    assert [(r.status, r.output) for r in results] == [("completed", i) for i in range(12)]
    queued = [e for e in events if isinstance(e, RunQueued)]
    # every run queued at its customer's gate, then at its region's
    gates = defaultdict(list)
    for e in queued:
        gates[e.run_id].append((e.stage, e.key))
    assert all(
        gates[r.run_id]
        == [(0, f"per_customer_and_region/c{i % 2}"), (1, f"per_customer_and_region:rate/r{i % 3}")]
        for i, r in enumerate(results)
    ), gates
    held: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    admitted = {
        e.run_id: e.ts for e in events if isinstance(e, RunAdmitted) and not e.id.endswith("then")
    }
    released = {e.run_id: e.ts for e in events if isinstance(e, FlowReleased) and e.stage == 0}
    for i, r in enumerate(results):
        held[f"c{i % 2}"].append((admitted[r.run_id], released[r.run_id], r.run_id))
        assert admitted[r.run_id] <= ran[r.run_id][0] <= ran[r.run_id][1] <= released[r.run_id]
    for customer, spans in held.items():
        assert most_at_once(spans) <= 2, customer  # the concurrency limit, per customer
    starts: dict[str, list[float]] = defaultdict(list)
    for event in events:
        if isinstance(event, RunAdmitted) and event.id.endswith("then"):
            start = event.not_before or event.ts
            assert ran[event.run_id][0] >= start  # the body began no sooner than the rate let it
            index = next(i for i, r in enumerate(results) if r.run_id == event.run_id)
            starts[f"r{index % 3}"].append(start)
    for region, found in starts.items():
        found.sort()
        assert len(found) == 4
        for first, later in zip(found, found[3:], strict=False):
            assert later - first >= 1.0 - 1e-6, (region, found)  # at most 3 per second


async def test_a_run_its_rate_gate_drops_frees_its_slot_at_the_concurrency_gate(store):
    wf = two_keys("drop_two", limit=1, rate=1, period=3600, on_excess="drop")
    async with Engine(store, [wf]) as engine:
        first = await engine.start(wf, params={"customer": "a", "region": "eu", "n": 1})
        assert (await first.result(timeout=60)).status == "completed"
        dropped = await engine.start(wf, params={"customer": "b", "region": "eu", "n": 2})
        result = await dropped.result(timeout=60)
        # customer b's only slot is free again: a run of b in another region runs
        after = await engine.start(wf, params={"customer": "b", "region": "us", "n": 3})
        done = await after.result(timeout=60)
        events = await history(engine, dropped.run_id)
    assert result.status == "dropped"
    assert "rate limit of drop_two:rate/eu" in (result.error or "")
    assert (done.status, done.output) == ("completed", 3)
    assert [(e.key, e.stage) for e in events if isinstance(e, FlowReleased)] == [("drop_two/b", 0)]


def test_a_concurrency_and_a_rate_limit_of_two_keys_are_taken_and_each_checked():
    wf = two_keys("ok_two", limit=1, rate=1, period=60)
    assert wf.flow_spec is not None and wf.flow_spec.split


def test_a_run_of_two_gates_shows_queued_until_the_second_admits_it():
    def queued(stage: int) -> RunQueued:
        return RunQueued(
            id=queued_id("r", 0, stage),
            run_id="r",
            workflow="w",
            key=["w/c", "w:rate/eu"][stage],
            limits={},
            stages=2,
            stage=stage,
            prior="w/c" if stage else None,
        )

    history_ = [
        h.RunRequested(id="req", run_id="r", workflow="w"),
        queued(0),
        RunAdmitted(id=admitted_id("r", 0, 0), run_id="r"),
        queued(1),
        RunAdmitted(id=admitted_id("r", 0, 1), run_id="r", not_before=5.0),
    ]
    shown = [status_of(fold_all("r", history_[: n + 1])) for n in range(len(history_))]
    assert shown == ["running", "queued", "queued", "queued", "running"]
