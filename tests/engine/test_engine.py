"""Runs on every store: outputs, retries, timeouts, fallbacks, failures, cancellation."""

from __future__ import annotations

import asyncio

from deerflow import Engine, NonRetryableError, Workflow
from deerflow.core import history as h


def etl() -> Workflow:
    wf = Workflow(name="etl")

    @wf.task(id="extract")
    def extract(context):
        return {"rows": [1, 2, 3], "day": context.params["day"]}

    @wf.task(
        id="load", depends_on=["extract"], retries=3, retry_delay=0.05, backoff=2.0, timeout=30
    )
    async def load(context):
        return {"n": len(context.tasks["extract"].output["rows"]), "input": context.input}

    return wf


async def test_a_workflow_runs_to_completion_and_is_listed(store):
    wf = etl()
    async with Engine(store, [wf]) as engine:
        handle = await engine.start(wf, params={"day": "2026-11-29"}, input={"x": 1})
        result = await handle.result(timeout=60)
        assert result.status == "completed"
        assert result.output == {"n": 3, "input": {"x": 1}}
        assert result.tasks["extract"].output == {"rows": [1, 2, 3], "day": "2026-11-29"}
        assert result.tasks["load"].attempts == 1
        runs = await engine.list_runs(workflow="etl", status="completed")
        assert [r.run_id for r in runs] == [result.run_id]
        same = await engine.get_run(result.run_id)
        assert same.output == result.output and same.status == "completed"


async def test_starting_an_existing_run_id_returns_the_existing_run(store):
    wf = etl()
    async with Engine(store, [wf]) as engine:
        first = await engine.start(wf, params={"day": "a"}, run_id="order-42")
        await first.result(timeout=60)
        again = await engine.start(wf, params={"day": "b"}, run_id="order-42")
        result = await again.result(timeout=60)
        assert again.run_id == "order-42"
        assert result.tasks["extract"].output["day"] == "a"
        assert len(await engine.list_runs(workflow="etl")) == 1


async def test_a_flaky_task_is_retried_with_backoff_until_it_succeeds(store):
    wf = Workflow(name="flaky")
    seen: list[int] = []

    @wf.task(id="call", retries=3, retry_delay=0.05, backoff=2.0)
    def call(context):
        seen.append(context.attempt)
        if context.attempt < 3:
            raise ConnectionError(f"attempt {context.attempt} refused")
        return {"ok": context.attempt}

    async with Engine(store, [wf]) as engine:
        result = await (await engine.start(wf)).result(timeout=60)
    assert result.status == "completed"
    assert result.output == {"ok": 3}
    assert result.tasks["call"].attempts == 3
    assert seen == [1, 2, 3]


async def test_a_task_over_its_timeout_fails_and_downstream_is_skipped(store):
    wf = Workflow(name="slow")

    @wf.task(id="sleepy", timeout=0.2)
    async def sleepy(context):
        await asyncio.sleep(5)

    @wf.task(id="after", depends_on=["sleepy"])
    def after(context):
        return "never"

    async with Engine(store, [wf]) as engine:
        result = await (await engine.start(wf)).result(timeout=60)
    assert result.status == "failed"
    assert result.failed_task == "sleepy"
    assert "timed out after 0.2s" in (result.tasks["sleepy"].error or "")
    assert result.tasks["after"].status == "skipped"


async def test_a_fallback_supplies_the_output_after_retries_are_exhausted(store):
    wf = Workflow(name="fallback")

    async def cached(context):
        return {"source": "cache", "attempt": context.attempt}

    @wf.task(id="fetch", retries=1, retry_delay=0.01, fallback=cached)
    def fetch(context):
        raise TimeoutError("upstream down")

    async with Engine(store, [wf]) as engine:
        result = await (await engine.start(wf)).result(timeout=60)
    assert result.status == "completed"
    assert result.output == {"source": "cache", "attempt": 3}


async def test_non_retryable_errors_and_unserialisable_outputs_fail_at_once(store):
    wf = Workflow(name="bad")
    calls: list[str] = []

    @wf.task(id="refuse", retries=5)
    def refuse(context):
        calls.append("refuse")
        raise NonRetryableError("card declined")

    @wf.task(id="weird", retries=5)
    def weird(context):
        calls.append("weird")
        return {"value": object()}

    async with Engine(store, [wf]) as engine:
        result = await (await engine.start(wf)).result(timeout=60)
    assert result.status == "failed"
    assert result.tasks["refuse"].error == "card declined"
    assert result.tasks["refuse"].attempts == 1
    assert "task 'weird' returned a value that is not JSON-serialisable" in (
        result.tasks["weird"].error or ""
    )
    assert sorted(calls) == ["refuse", "weird"]


async def test_cancelling_a_run_skips_what_has_not_started(store):
    wf = Workflow(name="cancellable")
    release = asyncio.Event()

    @wf.task(id="wait")
    async def wait(context):
        await release.wait()

    @wf.task(id="next", depends_on=["wait"])
    def next_(context):
        return "never"

    async with Engine(store, [wf]) as engine:
        handle = await engine.start(wf)
        await engine.index.wait(
            handle.run_id, lambda s: s.tasks.get("wait") is not None, timeout=30
        )
        await handle.cancel("operator said stop")
        result = await handle.result(timeout=60)
        release.set()
    assert result.status == "cancelled"
    assert result.error == "operator said stop"
    assert result.tasks["next"].status == "skipped"


async def test_a_pending_retry_survives_a_restart_of_the_engine(store):
    wf = Workflow(name="durable_retry")

    @wf.task(id="once_broken", retries=1, retry_delay=1.5)
    def once_broken(context):
        if context.attempt == 1:
            raise RuntimeError("first attempt fails")
        return {"attempt": context.attempt}

    async with Engine(store, [wf]) as engine:
        handle = await engine.start(wf)
        await engine.index.wait(handle.run_id, lambda s: bool(s.timers), timeout=30)
    # The engine is gone while the retry timer is pending; a new one must remember it.
    async with Engine(store, [wf]) as engine:
        result = await engine.wait(handle.run_id, timeout=60)
    assert result.status == "completed"
    assert result.output == {"attempt": 2}


async def test_re_appending_a_whole_history_changes_no_outcome(store):
    wf = etl()
    async with Engine(store, [wf]) as engine:
        result = await (await engine.start(wf, params={"day": "d"})).result(timeout=60)
        tp_events = []
        for tp in range(await engine.log.partition_count(engine.topics.history)):
            from deerflow.log.base import TopicPartition

            for record in await engine.log.read_partition(
                TopicPartition(engine.topics.history, tp)
            ):
                event = h.decode(record.value)
                if event.run_id == result.run_id:
                    tp_events.append(event)
        await engine.append_history(tp_events)
        await engine.index.sync()
    async with Engine(store, [wf]) as engine:
        again = await engine.get_run(result.run_id)
        runs = await engine.list_runs()
    assert again.status == "completed" and again.output == result.output
    assert len(runs) == 1
    assert again.events == result.events


def test_the_blocking_form_runs_on_the_embedded_store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DEERFLOW_STORE", raising=False)
    wf = etl()
    result = wf.run(params={"day": "2026-11-29"})
    assert result.status == "completed" and result.tasks["load"].output["n"] == 3
    assert (tmp_path / "deerflow.db").exists()


async def test_many_concurrent_waiters_share_one_run_index(store):
    wf = etl()
    async with Engine(store, [wf]) as engine:
        handles = [await engine.start(wf, params={"day": str(i)}) for i in range(10)]
        results = await asyncio.gather(*(h.result(timeout=60) for h in handles))
        # The owner may answer every result() itself; the index answers these waits.
        states = await asyncio.gather(
            *(engine.index.wait(h.run_id, lambda s: s.terminal, 60) for h in handles)
        )
        readers = [t for t in asyncio.all_tasks() if t.get_name() == "deerflow-runindex"]
    assert [r.status for r in results] == ["completed"] * 10
    assert [s.status if s else None for s in states] == ["completed"] * 10
    assert len(readers) == 1
