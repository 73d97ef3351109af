"""Streaming items through pipelines: batching, concurrency, ordering, errors, stopping."""

from __future__ import annotations

import asyncio
import threading
import time

from deerflow import Backpressure, NonRetryableError, Pipeline, Workflow, stage
from deerflow.pipeline import DeadLetter, PipelineRuntime, run_pipeline
from tests.pipeline.conftest import Collector, eventually


def workflow_of(pipeline: type[Pipeline], **declared) -> Workflow:
    wf = Workflow(name="p")
    wf.pipeline(**declared)(pipeline)
    return wf


def test_items_pass_every_stage_in_source_order_when_stages_are_serial(collected):
    class Chain(Pipeline):
        @stage
        def parse(self, item):
            return int(item)

        @stage
        async def square(self, number):
            return number * number

    result = workflow_of(Chain, sink=collected).run(input=[str(i) for i in range(300)])

    assert result.status == "completed"
    assert collected.items == [i * i for i in range(300)]
    assert (
        result.output["items"] | {"offered": 300, "completed": 300, "failed": 0}
        == result.output["items"]
    )
    assert result.tasks["sink"].output["processed"] == 300


def test_batches_flush_when_full_and_when_the_timeout_passes():
    seen: list[list[int]] = []

    class Batcher(Pipeline):
        @stage(batch_size=100, batch_timeout=0.2)
        def load(self, batch):
            seen.append(list(batch))
            return len(batch)

    async def bursty():
        for i in range(250):
            yield i
        await asyncio.sleep(1.5)  # far longer than the batch timeout
        for i in range(250, 253):
            yield i

    result = workflow_of(Batcher).run(input=bursty())

    assert result.status == "completed"
    assert [len(batch) for batch in seen] == [100, 100, 50, 3]
    assert [i for batch in seen for i in batch] == list(range(253))


def test_a_batch_output_that_is_not_one_per_item_goes_on_as_one_item(collected):
    class Summer(Pipeline):
        @stage(batch_size=10, batch_timeout=5)
        def total(self, batch):
            return sum(batch)

        @stage
        def label(self, total):
            return {"total": total}

    result = workflow_of(Summer, sink=collected).run(input=range(100))

    assert sorted(out["total"] for out in collected.items) == [
        sum(range(i, i + 10)) for i in range(0, 100, 10)
    ]
    # Counts stay in source items: the ten merged outputs stand for all 100 items.
    assert result.tasks["label"].output["processed"] == 100
    assert result.tasks["label"].output["calls"] == 10
    assert result.output["items"]["completed"] == 100


def test_sync_stages_run_in_as_many_threads_as_their_parallelism():
    running, peak, lock = 0, 0, threading.Lock()

    class Slow(Pipeline):
        @stage(parallelism=8)
        def work(self, item):
            nonlocal running, peak
            with lock:
                running += 1
                peak = max(peak, running)
            time.sleep(0.03)
            with lock:
                running -= 1
            return threading.get_ident()

    collected = Collector()
    workflow_of(Slow, sink=collected).run(input=range(64))

    assert peak == 8
    assert len(set(collected.items)) == 8


def test_stages_see_the_run_params(collected):
    class Scaled(Pipeline):
        @stage
        def scale(self, item):
            return item * self.params["factor"]

    workflow_of(Scaled, sink=collected).run({"factor": 3}, input=[1, 2])

    assert collected.items == [3, 6]


# -- ordering -------------------------------------------------------------------------------


class _KeyedDelays(Pipeline):
    """The first item of each key is slow, so a parallel stage lets later ones overtake it."""

    @stage(parallelism=4)
    async def unordered(self, item):
        await asyncio.sleep(0.1 if item["seq"] == 0 else 0)
        return item


class _KeyedDelaysOrdered(Pipeline):
    @stage(parallelism=4, ordered=True)
    async def ordered(self, item):
        await asyncio.sleep(0.1 if item["seq"] == 0 else 0.001)
        return item


def keyed_items(keys: int = 6, per_key: int = 20):
    return [{"user": f"u{k}", "seq": s} for s in range(per_key) for k in range(keys)]


def sequences(items):
    by_key: dict[str, list[int]] = {}
    for item in items:
        by_key.setdefault(item["user"], []).append(item["seq"])
    return by_key


def test_an_ordered_stage_keeps_each_keys_order_and_an_unordered_one_does_not(collected):
    ordered_wf = workflow_of(_KeyedDelaysOrdered, sink=collected, key=lambda i: i["user"])
    ordered_wf.run(input=keyed_items())

    assert all(seqs == list(range(20)) for seqs in sequences(collected.items).values())

    control = Collector()
    workflow_of(_KeyedDelays, sink=control, key=lambda i: i["user"]).run(input=keyed_items())
    assert any(seqs != list(range(20)) for seqs in sequences(control.items).values())


# -- errors ---------------------------------------------------------------------------------


def test_failing_items_are_retried_then_dead_lettered_and_the_rest_flows(collected, letters):
    attempts: dict[int, int] = {}

    class Fragile(Pipeline):
        @stage(parallelism=4, retries=2, retry_delay=0.001)
        def check(self, item):
            attempts[item] = attempts.get(item, 0) + 1
            if item % 10 == 3:
                raise ValueError(f"bad item {item}")
            if item % 10 == 5 and attempts[item] == 1:
                raise ConnectionError("flaky")  # succeeds on the retry
            if item == 99:
                raise NonRetryableError("refused")
            return item

    result = workflow_of(Fragile, sink=collected, dead_letter=letters).run(input=range(100))

    assert result.status == "completed"
    bad = [i for i in range(100) if i % 10 == 3]
    assert sorted(collected.items) == [i for i in range(100) if i not in bad and i != 99]
    by_item = {letter.item: letter for letter in letters.items}
    assert sorted(by_item) == [*bad, 99]
    assert isinstance(by_item[13], DeadLetter)
    assert (by_item[13].stage, by_item[13].attempts, by_item[13].error_type) == (
        "check",
        3,
        "ValueError",
    )
    assert by_item[13].reason == "bad item 13"
    assert by_item[99].attempts == 1
    assert attempts[5] == 2
    check = result.tasks["check"].output
    assert (check["failed"], check["processed"]) == (11, 89)
    assert check["errors"] == 3 * 10 + 10 + 1
    assert result.output["items"]["failed"] == 11


def test_a_batch_that_keeps_failing_dead_letters_each_of_its_items(collected, letters):
    class PoisonedBatch(Pipeline):
        @stage(batch_size=5, batch_timeout=5, retries=1, retry_delay=0.001)
        def load(self, batch):
            if 7 in batch:
                raise RuntimeError("constraint violated")
            return batch

    result = workflow_of(PoisonedBatch, sink=collected, dead_letter=letters).run(input=range(20))

    assert sorted(letter.item for letter in letters.items) == [5, 6, 7, 8, 9]
    assert {letter.stage for letter in letters.items} == {"load"}
    assert sorted(collected.items) == [i for i in range(20) if not 5 <= i <= 9]
    assert result.output["items"]["failed"] == 5


def test_when_dead_letters_cannot_be_written_the_pipeline_fails_rather_than_lose_items():
    class AlwaysFails(Pipeline):
        @stage
        def work(self, item):
            raise ValueError("no")

    def broken_dead_letter_sink(letter):
        raise OSError("disk full")

    result = workflow_of(AlwaysFails, dead_letter=broken_dead_letter_sink).run(input=range(3))

    assert result.status == "failed"
    assert "cannot write dead letters" in (result.error or "")


def test_a_failing_source_fails_the_run_after_draining_what_it_gave():
    def source():
        yield from range(10)
        raise OSError("upstream went away")

    collected = Collector()

    class Passing(Pipeline):
        @stage
        def work(self, item):
            return item

    result = workflow_of(Passing, sink=collected).run(input=source())

    assert result.status == "failed"
    assert "upstream went away" in (result.error or "")
    assert sorted(collected.items) == list(range(10))


# -- stopping -------------------------------------------------------------------------------


class _SlowStage(Pipeline):
    @stage(parallelism=4)
    async def work(self, item):
        await asyncio.sleep(0.02)
        return item


async def endless():
    n = 0
    while True:
        yield n
        n += 1
        await asyncio.sleep(0)


async def test_a_graceful_stop_drains_every_admitted_item(collected):
    runtime = PipelineRuntime(
        _SlowStage, source=endless(), sink=collected, backpressure=Backpressure(max_buffer_size=40)
    )
    await runtime.start()
    await eventually(lambda: len(collected) >= 50, what="50 items through")
    in_flight_at_stop = runtime.intake.inflight

    report = await runtime.stop()

    assert in_flight_at_stop > 0
    assert report is not None and report.status == "cancelled"
    assert report.items["in_flight"] == 0
    assert report.items["completed"] == report.items["admitted"] == len(collected)
    assert sorted(collected.items) == list(range(len(collected)))  # no gap: nothing lost


async def test_run_with_a_timeout_stops_gracefully(collected):
    wf = workflow_of(_SlowStage, sink=collected)

    result = await run_pipeline(
        wf, input=endless(), timeout=0.5, backpressure=Backpressure(max_buffer_size=20)
    )

    assert result.status == "cancelled"
    assert result.output["items"]["in_flight"] == 0
    assert len(collected) == result.output["items"]["completed"] > 0


def test_a_flaky_sink_is_retried_and_an_item_whose_key_cannot_be_computed_is_dead_lettered(letters):
    delivered: list[int] = []
    failures = iter([True, True])  # the first two writes fail

    def flaky_sink(value):
        if next(failures, False):
            raise ConnectionError("sink briefly unavailable")
        delivered.append(value)

    class Passing(Pipeline):
        @stage
        def work(self, item):
            return item

    wf = workflow_of(Passing, sink=flaky_sink, dead_letter=letters, key=lambda item: 10 // item)
    result = wf.run(input=range(50))

    assert sorted(delivered) == list(range(1, 50))
    assert [(d.stage, d.item) for d in letters.items] == [("source", 0)]
    assert "key function raised ZeroDivisionError" in letters.items[0].reason
    assert result.tasks["sink"].output["retries"] == 2
    assert result.output["items"] | {"completed": 49, "failed": 1} == result.output["items"]
