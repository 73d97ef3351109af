"""Eager dispatch: the next attempt of a run goes straight to a worker of the deciding process.

What a user relies on: chains skip the task queue, fan-outs start what fits in free slots and
spread the rest over the queue's partitions, an eager attempt whose process went away is run
again by the run's next owner, and a task body cannot change the engine's copy of what it was
given.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from deerflow import Engine, Workflow
from deerflow.core import history as h
from tests.logs import history, records


def chain(steps: int, calls: Counter[str]) -> Workflow:
    wf = Workflow(name="eager_chain")
    previous: list[str] = []
    for i in range(steps):

        def body(context, i=i):
            calls[f"s{i}"] += 1
            return {"i": i}

        wf.task(id=f"s{i}", depends_on=previous)(body)
        previous = [f"s{i}"]
    return wf


async def test_a_chain_runs_every_step_eagerly_without_task_messages(store):
    calls: Counter[str] = Counter()
    wf = chain(5, calls)
    async with Engine(store, [wf]) as engine:
        result = await (await engine.start(wf)).result(timeout=60)
        assert result.status == "completed" and result.output == {"i": 4}
        scheduled = [
            e for e in await history(engine, result.run_id) if isinstance(e, h.TaskScheduled)
        ]
        assert [(e.task_id, e.eager) for e in scheduled] == [(f"s{i}", True) for i in range(5)]
        assert await records(engine.log, engine.topics.tasks) == []
    assert calls == {f"s{i}": 1 for i in range(5)}


async def test_as_many_chains_as_slots_all_run_eagerly(store):
    # A finished attempt's slot is free once its outcome is durable, so the run's next step
    # (decided from that outcome) takes it: no step has to wait for the queue.
    calls: Counter[str] = Counter()
    wf = chain(5, calls)
    slots = 8
    async with Engine(store, [wf], concurrency=slots) as engine:
        handles = await asyncio.gather(*(engine.start(wf) for _ in range(slots)))
        results = await asyncio.gather(*(hd.result(timeout=60) for hd in handles))
        assert [r.status for r in results] == ["completed"] * slots
        assert await records(engine.log, engine.topics.tasks) == []
    assert calls == {f"s{i}": slots for i in range(5)}


async def test_without_eager_every_attempt_goes_through_the_task_queue(store):
    calls: Counter[str] = Counter()
    wf = chain(3, calls)
    async with Engine(store, [wf], eager=False) as engine:
        result = await (await engine.start(wf)).result(timeout=60)
        assert result.status == "completed"
        scheduled = [
            e for e in await history(engine, result.run_id) if isinstance(e, h.TaskScheduled)
        ]
        assert not any(e.eager for e in scheduled)
        assert len(await records(engine.log, engine.topics.tasks)) == 3


async def test_a_fan_out_starts_what_fits_in_free_slots_and_queues_the_rest_evenly(store):
    wf = Workflow(name="eager_fanout")
    width = 33

    @wf.task(id="split")
    def split(context):
        return list(range(width))

    @wf.parallel_tasks(id="each", depends_on=["split"])
    def each(item, context):
        return item * 2

    @wf.task(id="total", depends_on=["each"])
    def total(context):
        return sum(context.parallel_results["each"])

    async with Engine(store, [wf], concurrency=4) as engine:
        result = await (await engine.start(wf)).result(timeout=60)
        assert result.status == "completed" and result.output == width * (width - 1)
        queued = await records(engine.log, engine.topics.tasks)
        partitions = await engine.log.partition_count(engine.topics.tasks)
        scheduled = [
            e
            for e in await history(engine, result.run_id)
            if isinstance(e, h.TaskScheduled) and e.task_id.startswith("each/")
        ]
    # This one process consumes every partition, so the whole fan-out is its share: the four
    # free slots start four children at once, the other children go through the queue,
    # evenly over its partitions.
    eager = sorted(e.task_id for e in scheduled if e.eager)
    children = [r for r in queued if r.key is not None and "/each/" in r.key]
    assert len(eager) == 4
    assert len(children) == width - 4
    assert sorted({str(r.key).split("/", 1)[1] for r in children} | set(eager)) == sorted(
        e.task_id for e in scheduled
    )
    per_partition = Counter(r.partition for r in children)
    assert len(per_partition) == partitions
    assert max(per_partition.values()) - min(per_partition.values()) <= 1


async def test_an_eager_attempt_left_without_outcome_is_run_by_the_next_owner(store):
    """The process that took an attempt eagerly died: the rebuild re-dispatches it."""
    calls: Counter[str] = Counter()
    wf = chain(2, calls)
    run_id = "crashed-run"
    async with Engine(store, [wf], orchestrate=False, work=False) as writer:
        # What a process that died right after taking s0 eagerly leaves in the history.
        await writer.append_history(
            [
                h.RunRequested(
                    id=h.event_id(run_id, "requested"),
                    run_id=run_id,
                    workflow=wf.name,
                    version=wf.version,
                    fingerprint=wf.fingerprint(),
                    shape=wf.shape(),
                ),
                h.TaskScheduled(
                    id=h.event_id(run_id, "s0", 1, "scheduled"),
                    run_id=run_id,
                    task_id="s0",
                    attempt=1,
                    eager=True,
                ),
            ]
        )
    async with Engine(store, [wf]) as engine:
        result = await engine.wait(run_id, timeout=60)
        assert result.status == "completed"
        assert result.tasks["s0"].attempts == 1  # the same attempt, delivered again
    assert calls == {"s0": 1, "s1": 1}


async def test_a_stopping_worker_hands_its_unfinished_eager_attempt_to_the_queue(store):
    release, started = asyncio.Event(), asyncio.Event()
    wf = Workflow(name="eager_handover")
    ran: list[str] = []

    @wf.task(id="slow")
    async def slow(context):
        ran.append(context.run_id)
        started.set()
        await release.wait()
        return "done"

    async with Engine(store, [wf]) as first:
        handle = await first.start(wf)
        await asyncio.wait_for(started.wait(), 30)
        assert first.worker is not None
        await first.worker.stop(drain_timeout=0.1)
        queued = await records(first.log, first.topics.tasks)
        recorded = {type(e).__name__ for e in await history(first, handle.run_id)}
    assert len(queued) == 1  # the attempt, for any other worker
    assert "TaskRequeued" in recorded  # so the next owner does not queue it a second time
    release.set()
    async with Engine(store, [wf]) as second:
        result = await second.wait(handle.run_id, timeout=60)
    assert result.status == "completed" and result.output == "done"
    assert ran == [handle.run_id, handle.run_id]


async def test_a_body_mutating_its_inputs_does_not_change_the_run(store):
    wf = Workflow(name="eager_mutation")

    @wf.task(id="make")
    def make(context):
        return {"items": [1, 2]}

    @wf.task(id="spoil", depends_on=["make"])
    def spoil(context):
        context.tasks["make"].output["items"].append(99)
        return len(context.tasks["make"].output["items"])

    @wf.task(id="read", depends_on=["spoil", "make"])
    def read(context):
        return context.tasks["make"].output

    async with Engine(store, [wf]) as engine:
        result = await (await engine.start(wf)).result(timeout=60)
    assert result.tasks["spoil"].output == 3
    assert result.output == {"items": [1, 2]}
    assert result.tasks["make"].output == {"items": [1, 2]}


async def test_eager_attempts_and_queued_ones_together_stay_within_the_concurrency(store):
    wf = Workflow(name="eager_bound")
    running, peak = 0, 0

    async def busy() -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.02)
        running -= 1

    @wf.task(id="a")
    async def a(context):
        await busy()

    @wf.task(id="b", depends_on=["a"])
    async def b(context):
        await busy()
        return list(range(4))

    @wf.parallel_tasks(id="many", depends_on=["b"])
    async def many(item, context):
        await busy()
        return item

    async with Engine(store, [wf], concurrency=2) as engine:
        handles = [await engine.start(wf) for _ in range(8)]
        results = [await handle.result(timeout=60) for handle in handles]
    assert [r.output for r in results] == [[0, 1, 2, 3]] * 8
    assert peak == 2  # both slots were used, never more


async def test_the_owner_answers_a_result_once_the_ending_is_durable_without_the_index(
    store, monkeypatch
):
    """``result()`` does not need the run index to read the ending back when this process
    decided it; what it returns is what the index says afterwards."""
    wf = chain(3, Counter())
    waiting = asyncio.Event()

    @wf.task(id="last", depends_on=["s2"])
    async def last(context):
        await waiting.wait()  # ends only once result() is waiting
        return {"i": 2}

    async with Engine(store, [wf]) as engine:

        async def index_never_answers(run_id, predicate, timeout):
            await asyncio.sleep(timeout)  # as if the index never read the ending back

        with monkeypatch.context() as patched:
            patched.setattr(engine.index, "wait", index_never_answers)
            handle = await engine.start(wf)
            result_task = asyncio.ensure_future(handle.result(timeout=10))
            await asyncio.sleep(0.1)
            waiting.set()
            result = await result_task
        assert result.status == "completed" and result.output == {"i": 2}
        assert await engine.get_run(handle.run_id) == result


async def test_a_result_awaited_while_the_run_moves_to_another_process_still_arrives(tmp_path):
    """The owner answered the wait; when the run's partition moves away, the index does."""
    url = f"sqlite:///{tmp_path / 'moving.db'}"
    release = asyncio.Event()
    wf = Workflow(name="moving")

    @wf.task(id="slow")
    async def slow(context):
        await release.wait()
        return "done"

    async with Engine(url, [wf]) as first:
        handle = await first.start(wf)
        waiting = asyncio.ensure_future(handle.result(timeout=60))
        await asyncio.sleep(0.2)
        assert first.orchestrator is not None
        await first.orchestrator.stop()  # its partitions go to the next member
        async with Engine(url, [wf]):
            release.set()
            result = await waiting
    assert result.status == "completed" and result.output == "done"


async def test_a_body_mutating_the_runs_params_and_input_does_not_change_them_for_the_next(store):
    wf = Workflow(name="eager_mutation_params")

    @wf.task(id="spoil")
    async def spoil(context):
        context.params["items"].append(99)
        context.input["seen"] = True
        return [len(context.params["items"]), sorted(context.input)]

    @wf.task(id="read", depends_on=["spoil"])
    async def read(context):
        return [context.params["items"], context.input, context.seen]

    async with Engine(store, [wf]) as engine:
        handle = await engine.start(wf, params={"items": [1]}, input={"seen": False})
        result = await handle.result(timeout=60)
    assert result.tasks["spoil"].output == [2, ["seen"]]
    assert result.output == [[1], {"seen": False}, False]
