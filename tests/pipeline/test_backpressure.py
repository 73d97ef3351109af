"""The in-flight bound holds whatever the producer does; drop and sample let go and count."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from deerflow import Backpressure, Pipeline, Workflow, stage
from deerflow.pipeline import run_pipeline
from tests.pipeline.conftest import Collector


class _Throttled(Pipeline):
    """A fast parallel stage, a batch stage, then (in the tests) a slow sink."""

    @stage(parallelism=4)
    async def parse(self, item):
        return item

    @stage(parallelism=2, batch_size=5, batch_timeout=0.05)
    def enrich(self, batch):
        return [{"n": n} for n in batch]


class _Watched:
    """A producer and a slow sink that measure, from outside, how many items are in between."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.produced = 0
        self.consumed = Collector()
        self.peak_between = 0

    def items(self):
        for n in range(self.total):
            self.peak_between = max(self.peak_between, self.produced - len(self.consumed))
            self.produced += 1
            yield n

    def sink(self, value) -> None:
        time.sleep(0.001)
        self.consumed(value["n"])


def run_watched(backpressure: Backpressure, total: int = 400) -> tuple[_Watched, dict[str, Any]]:
    watched = _Watched(total)
    wf = Workflow(name="bounded")
    wf.pipeline(backpressure=backpressure, sink=watched.sink)(_Throttled)
    result = wf.run(input=watched.items())
    assert result.status == "completed", result.error
    return watched, result.output["items"]


def test_block_never_holds_more_than_the_bound_and_never_loses_an_item():
    watched, items = run_watched(Backpressure(max_buffer_size=20, strategy="block"))

    # Seen from outside: produced but not yet consumed never exceeds the bound.
    assert watched.peak_between <= 20
    assert items["peak_in_flight"] == 20  # the bound was reached, so it was what held
    assert sorted(watched.consumed.items) == list(range(400))
    assert items["dropped"] == 0


def test_without_a_bound_the_same_producer_runs_far_ahead_of_the_sink():
    # The negative control: the measurement above can fail.
    watched, items = run_watched(Backpressure(max_buffer_size=None))

    assert watched.peak_between > 100
    assert items["peak_in_flight"] > 100


async def slow_pipeline(strategy: str, total: int, bound: int, seed: int = 7):
    class Slow(Pipeline):
        @stage
        async def work(self, item):
            await asyncio.sleep(0.002)
            return item

    kept = Collector()
    wf = Workflow(name=f"slow_{strategy}")
    pressure = Backpressure(max_buffer_size=bound, strategy=strategy)  # type: ignore[arg-type]
    wf.pipeline(backpressure=pressure, sink=kept)(Slow)
    result = await run_pipeline(wf, input=range(total), seed=seed)
    return result, kept.items


async def test_drop_drops_new_items_when_full_and_counts_them():
    result, kept = await slow_pipeline("drop", total=1000, bound=20)

    items = result.output["items"]
    assert items["dropped"] > 0
    assert items["completed"] + items["dropped"] == 1000 == items["offered"]
    assert kept[:20] == list(range(20))  # the first items found room; later ones were dropped
    assert result.tasks["work"].output["dropped"] == items["dropped"]
    assert items["peak_in_flight"] <= 20


async def test_sample_keeps_a_spread_of_the_whole_overload_in_order_and_counts_the_rest():
    result, kept = await slow_pipeline("sample", total=2000, bound=200)

    items = result.output["items"]
    assert items["completed"] + items["dropped"] == 2000
    assert items["dropped"] > 1000
    assert kept == sorted(kept)  # what is kept stays in arrival order
    per_decile = [sum(1 for n in kept if n // 200 == d) for d in range(10)]
    # A uniform sample of ~200 puts ~20 in each tenth of the stream; 5 is far in the tail.
    assert min(per_decile) >= 5, per_decile
    assert items["peak_in_flight"] <= 200


async def test_drop_under_the_same_overload_keeps_mostly_the_oldest_items():
    # The contrast that makes "representative" mean something.
    _, dropped_run = await slow_pipeline("drop", total=2000, bound=200)
    _, sampled_run = await slow_pipeline("sample", total=2000, bound=200)

    def late(kept):
        return sum(1 for n in kept if n >= 1000)

    assert late(sampled_run) > late(dropped_run)
