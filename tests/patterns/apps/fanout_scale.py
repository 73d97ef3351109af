"""One run fanning out N tasks on a store; prints JSON with seconds and peak RSS.

    python tests/patterns/apps/fanout_scale.py 10000 sqlite:///tmp/scale.db

Used by tests/patterns/test_scale.py and to measure (see the report in the test's docstring).
"""

from __future__ import annotations

import json
import sys
import time

from deerflow import Workflow
from tests.rss import peak_rss_mib

workflow = Workflow(name="fanout_scale")


@workflow.task(id="split")
def split(context):
    return {"items": list(range(context.params["n"]))}


@workflow.parallel_tasks(id="work", depends_on=["split"])
async def work(item, context):
    return item * 2


@workflow.task(id="merge", depends_on=["work"])
def merge(context):
    results = context.parallel_results["work"]
    return {"count": len(results), "total": sum(results)}


def main() -> None:
    n, store = int(sys.argv[1]), sys.argv[2]
    started = time.perf_counter()
    result = workflow.run(params={"n": n}, store=store, timeout=1800)
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "n": n,
                "status": result.status,
                "output": result.output,
                "seconds": round(seconds, 2),
                "peak_rss_mib": round(peak_rss_mib(), 1),
            }
        )
    )


if __name__ == "__main__":
    main()
