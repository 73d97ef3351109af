"""g. Event waits: event → resumed node latency with many runs waiting, memory per waiting run.

``W`` runs of ``bench_waits`` (one ``wait_for_event`` node matching ``data.key`` to
``params.key``, then a task) are started and left waiting on an in-process engine on Kafka
(orchestrator, router, index, worker and run index in one process), until every run waits in
the index and the orchestrator has folded every record the starts wrote (each wait fails
after a minute without progress). Each iteration publishes
200 ``Approved`` events open loop at 50/s, each for the next still-waiting run; the task after
the wait records ``time.time() - t`` (``t``: the event's scheduled send time). Baseline: raw
produce→consume on the same broker, as in b.

Memory: the process's RSS (``/proc/self/statm``) before the ``W`` runs start and once every
one waits, divided by ``W`` (every part of the deployment in one process: run states, index,
router, run index cache; less what tracemalloc itself takes); the Python objects still
allocated then, after a gc, by ``tracemalloc`` over the same span (what the runs hold: the
rest of the RSS is the allocator's free space left by the starts' peaks); and the index
alone: ``tracemalloc`` over a :class:`~deerflow.matching._index.PartitionIndex` filled with
``W`` waits as the router files them.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

from bench.context import BenchContext
from bench.harness import Comparison, Goal, Metric, Metrics
from bench.latency_parts import ProduceConsumeBaseline, latency_metrics, open_loop
from deerflow import Engine, EventStore, Workflow
from deerflow.matching import Matcher
from deerflow.matching._index import PartitionIndex, Wait
from deerflow.matching._spec import event_key

SCENARIO = "g. event waits"
log = logging.getLogger("bench")
SINK: list[float] = []
PAGE = os.sysconf("SC_PAGE_SIZE")
START_BATCH = 2000  # runs started at once (one gather), so the producer batches them
#: seconds a wait for the deployment to catch up may go without progress before it fails
STALL = 60.0


def waits_workflow() -> Workflow:
    """A wait for ``Approved`` of the run's key, then a task recording the latency."""
    wf = Workflow(name="bench_waits")
    wf.wait_for_event(id="approval", event="Approved", match={"data.key": "params.key"})

    @wf.task(id="resumed", depends_on=["approval"])
    async def resumed(context: Any) -> None:
        SINK.append(time.time() - float(context.tasks["approval"].output["data"]["t"]))

    return wf


def rss_bytes() -> int:
    """This process's resident set size now."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


async def _start_waiting(
    engine: Engine, wf: Workflow, count: int, *, settle: float = 0.0
) -> tuple[float, float, float]:
    """Start ``count`` runs and return once every one waits: bytes of RSS each (without
    tracemalloc's own traces), bytes of Python objects each still holds after a gc, and
    bytes of RSS each once the engine was left alone for ``settle`` more seconds after
    tracemalloc stopped (its trimmer gives a burst's free memory back: 0 measures at once)."""
    gc.collect()
    before = rss_bytes()
    tracemalloc.start()
    try:
        traced = tracemalloc.get_traced_memory()[0]
        for first in range(0, count, START_BATCH):
            keys = range(first, min(first + START_BATCH, count))
            await asyncio.gather(*(engine.start(wf, params={"key": f"k{k}"}) for k in keys))
        await _caught_up(engine, count)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - traced
        rss = rss_bytes() - before - tracemalloc.get_tracemalloc_memory()
    finally:
        tracemalloc.stop()
    await asyncio.sleep(settle)
    settled = rss_bytes() - before
    return rss / count, held / count, settled / count


async def _caught_up(engine: Engine, count: int) -> None:
    """Return once every run waits in the index and the orchestrator has folded every record
    the starts wrote; ``TimeoutError`` naming the part that stalled.

    Each condition is a count that must reach its goal; a wait fails only when its count
    stops moving for :data:`STALL` seconds (a large workload takes long, a stuck one fails
    soon). (Waiting for the process to look idle instead never ends where its idle polling
    costs more CPU than the threshold: tracemalloc triples that cost.) The run index is not
    waited for: it follows at its own pace (with tracemalloc on and 20,000 runs, a few records
    a second on a busy machine) and its cache of runs is bounded.
    """
    matcher = next(s for s in engine.services if isinstance(s, Matcher))
    orchestrator = engine.orchestrator
    assert orchestrator is not None

    async def waiting() -> int:
        return sum(len(i) for i in matcher.indexes.values())

    async def unfolded() -> int:
        return orchestrator.lag()

    await _progress("runs waiting in the matching index", waiting, count)
    await _progress("history records not folded by the orchestrator", unfolded, 0)


async def _progress(what: str, value: Callable[[], Awaitable[int]], goal: int) -> None:
    """Wait until ``value()`` reaches ``goal`` (from either side); ``TimeoutError`` once it
    has not moved for :data:`STALL` seconds."""
    last, moved, told = await value(), time.monotonic(), time.monotonic()
    while last != goal:
        await asyncio.sleep(0.1)
        now = await value()
        if time.monotonic() - told > 10:
            log.info("%s: %d (expected %d)", what, now, goal)
            told = time.monotonic()
        if now != last:
            last, moved = now, time.monotonic()
        elif time.monotonic() - moved > STALL:
            raise TimeoutError(f"{what}: {last:,} (expected {goal:,}), unchanged for {STALL:g}s")


def index_bytes_per_wait(count: int) -> float:
    """Bytes one wait takes in a partition's index, as the router files it."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    index = PartitionIndex()
    for n in range(count):
        ident = f"bench_waits-{n:08d}:approval:1:wait"
        node = ("approval", 1, "bench_waits", "1", False)
        key = event_key("Approved", ("data.key",), (f"k{n}",))
        index.add(Wait(ident, ident[:20], key, 1.0, None, node, 1000 + n), lambda w, v: True)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    del index
    return used / count


async def run(ctx: BenchContext) -> None:
    """The latency comparison and the memory rows."""
    s = ctx.sizes
    count, rate, waiting = s.latency_count, s.latency_rate, s.waiting_runs
    prefix = ctx.prefix("g")
    wf = waits_workflow()
    spare = count * (ctx.settings.pairs + ctx.settings.warmup)
    raw = ProduceConsumeBaseline(ctx.kafka_bootstrap(), f"{prefix}.raw")
    async with Engine(ctx.kafka_url(), [wf], prefix=prefix, concurrency=64) as engine:
        per_run, held, _ = await _start_waiting(engine, wf, waiting + spare)
        events = EventStore(engine.log, topic=engine.topics.events)
        keys = iter(range(waiting + spare))

        async def send(sent: float) -> None:
            await events.publish_async("Approved", {"key": f"k{next(keys)}", "t": sent})

        async def resumed() -> Metrics:
            SINK.clear()
            await open_loop(rate, count, send)
            deadline = time.monotonic() + 120
            while len(SINK) < count:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"only {len(SINK)} of {count} waits resumed")
                await asyncio.sleep(0.01)
            return latency_metrics(SINK[:count])

        await raw.start()
        try:
            await ctx.compare(
                Comparison(
                    SCENARIO,
                    f"{waiting + spare:,} runs waiting, {rate:g}/s",
                    "raw produce→consume",
                    "event → resumed node",
                    lambda: raw.measure(count, rate),
                    resumed,
                    [
                        Metric("p50_ms", "p50", "ms", Goal("<=", 3.0)),
                        Metric("p99_ms", "p99", "ms", Goal("<=", 3.0)),
                    ],
                    note=f"{count} events per iteration, open loop, each resuming one run",
                ),
                on_broker=True,
            )
        finally:
            await raw.stop()

    async def whole() -> Metrics:
        return {"bytes": per_run}

    async def objects() -> Metrics:
        return {"bytes": held}

    async def index_only() -> Metrics:
        return {"bytes": index_bytes_per_wait(waiting)}

    rows = (
        ("whole process", whole),
        ("Python objects held", objects),
        ("the index alone", index_only),
    )
    for name, measure in rows:
        await ctx.compare(
            Comparison(
                SCENARIO,
                f"memory per waiting run, {name}",
                "",
                f"{waiting:,} waits",
                None,
                measure,
                [Metric("bytes", "bytes", "B", Goal("<=", 2048.0))],
            )
        )
