"""The workflows the benchmark runs, and the plain functions their baselines call.

The driver process and the ``deerflow worker`` subprocesses (through
``bench/apps/engine_app.py``) import the same definitions, so names, versions and fingerprints
agree.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from pathlib import Path
from typing import Any

from deerflow import Batch, Concurrency, MapReduce, Workflow

CHAIN_STEPS = 10
_WORD = re.compile(r"[a-z]+")


def make_chain(steps: int = CHAIN_STEPS, name: str = "bench_chain") -> Workflow:
    """A chain of ``steps`` async no-op tasks, each depending on the one before."""
    wf = Workflow(name=name)
    previous: list[str] = []
    for index in range(steps):

        async def step(context: Any, index: int = index) -> int:
            return index

        task_id = f"s{index}"
        wf.task(id=task_id, depends_on=previous)(step)
        previous = [task_id]
    return wf


def make_short(name: str = "bench_short") -> Workflow:
    """A run of one async no-op task: the stream of short runs."""
    wf = Workflow(name=name)

    @wf.task(id="only")
    async def only(context: Any) -> int:
        return 1

    return wf


def make_keyed_short(name: str = "bench_keyed", limit: int = 10, key: str = "params.k") -> Workflow:
    """:func:`make_short` with flow control: at most ``limit`` running runs per ``key``."""
    wf = Workflow(name=name, concurrency=Concurrency(limit=limit, key=key))

    @wf.task(id="only")
    async def only(context: Any) -> int:
        return 1

    return wf


def make_batched(name: str = "bench_batch", size: int = 100) -> Workflow:
    """One task that counts its batch's events: ``size`` runs of a key make one run."""
    wf = Workflow(name=name, batch=Batch(max_size=size, timeout="60s", key="params.k"))

    @wf.task(id="count")
    async def count(context: Any) -> int:
        return len(context.trigger_events)

    return wf


def make_fanout(
    name: str = "bench_fanout", max_parallel: int | None = None, hold: bool = False
) -> Workflow:
    """``split`` lists ``params["n"]`` items, ``work`` runs once per item, ``merge`` counts.

    With ``hold`` each child waits until the process exits, so with a small ``max_parallel``
    the other children stay pending (the memory measurement).
    """
    wf = Workflow(name=name)

    @wf.task(id="split")
    async def split(context: Any) -> dict[str, Any]:
        return {"items": list(range(int(context.params["n"])))}

    @wf.parallel_tasks(id="work", depends_on=["split"], max_parallel=max_parallel)
    async def work(item: int, context: Any) -> int:
        if hold:
            await asyncio.Event().wait()
        return item

    @wf.task(id="merge", depends_on=["work"])
    async def merge(context: Any) -> int:
        return len(context.parallel_results["work"])

    return wf


def count_words(path: str) -> dict[str, int]:
    """The CPU-bound map: word counts of one corpus file."""
    return dict(Counter(_WORD.findall(Path(path).read_text())))


def add_counts(results: list[dict[str, int]]) -> dict[str, int]:
    """The reduce: counts of every map added up."""
    total: Counter[str] = Counter()
    for result in results:
        total.update(result)
    return dict(total)


class WordCount(MapReduce):
    """Word count over the files named by ``params["files"]``, one map task per file."""

    def partition(self, context: Any) -> list[str]:
        return list(context.params["files"])

    def map(self, partition: str, context: Any) -> dict[str, int]:
        return count_words(partition)

    def reduce(self, results: list[dict[str, int]], context: Any) -> int:
        return sum(add_counts(results).values())


class SleepMap(MapReduce):
    """I/O-bound maps: each waits ``params["delay"]`` seconds (a stand-in for a remote call)."""

    def partition(self, context: Any) -> list[int]:
        return list(range(int(context.params["n"])))

    async def map(self, partition: int, context: Any) -> int:
        await asyncio.sleep(float(context.params["delay"]))
        return partition

    async def reduce(self, results: list[int], context: Any) -> int:
        return len(results)


def make_wordcount() -> Workflow:
    """A workflow with one ``WordCount`` map-reduce node."""
    wf = Workflow(name="bench_wordcount")
    wf.map_reduce(id="count")(WordCount)
    return wf


def make_sleepmap() -> Workflow:
    """A workflow with one ``SleepMap`` map-reduce node."""
    wf = Workflow(name="bench_sleepmap")
    wf.map_reduce(id="sleep")(SleepMap)
    return wf


def write_corpus(folder: Path, chunks: int, words: int, seed: int = 7) -> list[str]:
    """``chunks`` text files of ``words`` words drawn from a fixed vocabulary (deterministic)."""
    import random

    rng = random.Random(seed)
    vocabulary = [
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 9)))
        for _ in range(2000)
    ]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(chunks):
        path = folder / f"chunk-{index:03d}.txt"
        if not path.exists():
            lines = (" ".join(rng.choices(vocabulary, k=20)) for _ in range(words // 20))
            path.write_text("\n".join(lines) + "\n")
        paths.append(str(path))
    return paths
