"""MapReduce in one process: the spec's class form, the reduce tree, retries of one map task."""

from __future__ import annotations

import asyncio
import re

import pytest

from deerflow import DefinitionError, Engine, MapReduce, Workflow

LOGS = {
    f"app-{i:02d}.log": [f"ERROR {kind}" for kind in ("Timeout", "DiskFull")[: 1 + i % 2]]
    + ["INFO ok"] * 3
    for i in range(23)
}


def expected_counts() -> dict[str, int]:
    counts: dict[str, int] = {}
    for lines in LOGS.values():
        for line in lines:
            if line.startswith("ERROR "):
                counts[line[6:]] = counts.get(line[6:], 0) + 1
    return counts


class LogAnalysis(MapReduce):
    """The spec's class, on an in-memory "log archive"."""

    def partition(self, context):
        return [{"file": f} for f in sorted(LOGS)]

    def map(self, partition, context):
        counts: dict[str, int] = {}
        for line in LOGS[partition["file"]]:
            error_type = line[6:] if line.startswith("ERROR ") else None
            if error_type:
                counts[error_type] = counts.get(error_type, 0) + 1
        return counts

    def reduce(self, results, context):
        combined: dict[str, int] = {}
        for result in results:
            for error_type, count in result.items():
                combined[error_type] = combined.get(error_type, 0) + count
        return {"total_errors": sum(combined.values()), "by_type": combined}


async def run(wf: Workflow, store: str = "memory://", **start):
    async with Engine(store, [wf]) as engine:
        return await (await engine.start(wf, **start)).result(timeout=60)


async def test_the_spec_class_counts_every_partition_through_a_reduce_tree(store):
    wf = Workflow(name="distributed_analysis")
    wf.map_reduce(id="analyze_logs", partitions=10, reduce_parallelism=3)(LogAnalysis)
    result = await run(wf, store)
    assert result.status == "completed", result.error
    counts = expected_counts()
    assert result.output == {"total_errors": sum(counts.values()), "by_type": counts}
    children = [t for t in result.tasks if t.startswith("analyze_logs/")]
    assert len([c for c in children if "/map-" in c]) == 10
    assert len([c for c in children if "/combine-" in c]) == 3
    assert children[-1] == "analyze_logs/reduce"


async def test_partial_reduces_use_combine_when_the_class_defines_it():
    class Combining(LogAnalysis):
        def combine(self, results, context):
            return self.reduce(results, context)["by_type"]

    wf = Workflow(name="combining")
    wf.map_reduce(id="logs", partitions=6, reduce_parallelism=2)(Combining)
    result = await run(wf)
    counts = expected_counts()
    assert result.output["by_type"] == counts
    partials = [result.tasks[f"logs/combine-{j}"].output for j in range(2)]
    assert all(len(p) == 1 for p in partials)  # one combined result each, not the slice
    assert sum(p[0]["Timeout"] for p in partials) == counts["Timeout"]


async def test_a_failed_map_task_is_retried_alone():
    calls: dict[int, int] = {}

    class Flaky(MapReduce):
        def partition(self, context):
            return list(range(12))

        def map(self, partition, context):
            calls[partition] = calls.get(partition, 0) + 1
            if partition == 7 and context.attempt == 1:
                raise ConnectionError("lost the file server")
            return partition

        def reduce(self, results, context):
            return results

    wf = Workflow(name="flaky_maps")
    wf.map_reduce(id="mr", partitions=6, reduce_parallelism=2, retries=2, retry_delay=0.01)(Flaky)
    result = await run(wf)
    assert result.output == list(range(12))  # in partition order, nothing lost or doubled
    attempts = {t: r.attempts for t, r in result.tasks.items() if "/map-" in t}
    assert attempts.pop("mr/map-3") == 2  # partitions 6 and 7
    assert set(attempts.values()) == {1}
    assert calls == {p: (2 if p in (6, 7) else 1) for p in range(12)}


async def test_async_methods_params_and_an_empty_partition_list():
    class Async(MapReduce):
        async def partition(self, context):  # type: ignore[override]  # async methods work too
            return list(range(context.params["n"]))

        async def map(self, partition, context):
            await asyncio.sleep(0)
            return partition * context.params["factor"]

        async def reduce(self, results, context):
            return {"sum": sum(results), "count": len(results)}

    wf = Workflow(name="async_mr")
    wf.map_reduce(id="mr", partitions=4, reduce_parallelism=2)(Async)
    assert (await run(wf, params={"n": 9, "factor": 3})).output == {"sum": 108, "count": 9}
    assert (await run(wf, params={"n": 0, "factor": 3})).output == {"sum": 0, "count": 0}


async def test_a_map_failing_for_good_fails_the_node():
    class Broken(LogAnalysis):
        def map(self, partition, context):
            raise ValueError(f"corrupt {partition['file']}")

    wf = Workflow(name="broken_mr")
    wf.map_reduce(id="mr", partitions=2)(Broken)
    wf.task(id="after", depends_on=["mr"])(lambda context: None)
    result = await run(wf)
    assert result.status == "failed" and result.failed_task == "mr"
    # Both maps fail; whichever the log records first names the node's failure.
    assert re.search(
        r"child 'mr/map-[01]' failed: ValueError: corrupt app-\d\d\.log",
        result.tasks["mr"].error or "",
    )
    assert result.tasks["after"].status == "skipped"


@pytest.mark.parametrize(
    ("decorated", "options", "message"),
    [
        (dict, {}, "decorates a subclass of MapReduce"),
        (
            type(
                "NoMap", (MapReduce,), {"partition": lambda s, c: [], "reduce": lambda s, r, c: 0}
            ),
            {},
            "must define map",
        ),
        (LogAnalysis, {"partitions": 0}, "partitions must be >= 1"),
        (LogAnalysis, {"reduce_parallelism": 0}, "reduce_parallelism must be >= 1"),
    ],
)
def test_bad_map_reduce_definitions_are_refused(decorated, options, message):
    wf = Workflow(name="bad_mr")
    with pytest.raises(DefinitionError, match=message):
        wf.map_reduce(id="mr", **options)(decorated)
