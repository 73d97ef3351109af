"""Fan-out / fan-in: process chunks of a dataset in parallel, then merge the results.

The spec's "Fan-Out / Fan-In" sample as written, plus local stand-ins for the helpers it
calls, and the same pipeline in the functional form (``parallel`` and ``gather``) with a
concurrency limit for the whole run. Run them with::

    deerflow run examples/fan_out_fan_in.py:parallel_processing
    deerflow run examples/fan_out_fan_in.py:parallel_processing_functional

Each chunk becomes a child task ``process_chunks/<n>``; ``context.parallel_results`` keeps the
chunk order whatever order they finish in.
"""

from __future__ import annotations

from typing import Any

from deerflow import Workflow, gather, parallel


def load_large_dataset() -> list[dict[str, Any]]:
    """Stand-in for a large dataset: 1,000 sensor readings."""
    return [{"sensor": f"s{i % 7}", "value": (i * 37) % 101} for i in range(1000)]


def split_into_chunks(data: list[Any], num_chunks: int) -> list[list[Any]]:
    """``num_chunks`` contiguous chunks of near-equal size."""
    size, extra = divmod(len(data), num_chunks)
    chunks, start = [], 0
    for index in range(num_chunks):
        end = start + size + (1 if index < extra else 0)
        chunks.append(data[start:end])
        start = end
    return chunks


def process_data(chunk: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-sensor sums and counts of one chunk."""
    stats: dict[str, dict[str, int]] = {}
    for reading in chunk:
        entry = stats.setdefault(reading["sensor"], {"sum": 0, "count": 0})
        entry["sum"] += reading["value"]
        entry["count"] += 1
    return stats


def merge_datasets(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-sensor means over every chunk's stats."""
    totals: dict[str, dict[str, int]] = {}
    for stats in results:
        for sensor, entry in stats.items():
            total = totals.setdefault(sensor, {"sum": 0, "count": 0})
            total["sum"] += entry["sum"]
            total["count"] += entry["count"]
    return {
        "chunks": len(results),
        "readings": sum(t["count"] for t in totals.values()),
        "mean_by_sensor": {s: round(t["sum"] / t["count"], 3) for s, t in sorted(totals.items())},
    }


# -- The spec's sample -------------------------------------------------------------------------

workflow = Workflow(name="parallel_processing")


@workflow.task(id="split")
def split_data(context):
    data = load_large_dataset()
    chunks = split_into_chunks(data, num_chunks=10)
    return {"chunks": chunks}


@workflow.parallel_tasks(id="process_chunks", depends_on=["split"])
def process_chunk(chunk, context):
    """This runs in parallel for each chunk."""
    return process_data(chunk)


@workflow.task(id="merge", depends_on=["process_chunks"])
def merge_results(context):
    """Gather and merge all parallel results."""
    results = context.parallel_results["process_chunks"]
    return merge_datasets(results)


# -- The functional form: parallel(...) as a node, gather(...) in the fan-in task -------------

functional = Workflow(name="parallel_processing_functional", max_parallel=4)


@functional.task(id="split")
def split_again(context):
    return {"chunks": split_into_chunks(load_large_dataset(), num_chunks=10)}


functional.add(
    parallel(lambda chunk, context: process_data(chunk), id="process_chunks", over="split.chunks")
)


@functional.task(id="merge", depends_on=["process_chunks"])
def merge_gathered(context):
    return merge_datasets(gather("process_chunks"))
