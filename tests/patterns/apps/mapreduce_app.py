"""A map-reduce for multi-process tests: each map call records its pid in the sink ($SINK_DB).

The result lists every partition number the reduce saw, so a lost or double-counted partition
shows in the output.
"""

from __future__ import annotations

import os
import time

from deerflow import MapReduce, Workflow
from tests.engine.apps.sink import Sink

SINK = Sink(os.environ["SINK_DB"])
workflow = Workflow(name="spread_map_reduce")


@workflow.map_reduce(id="count", partitions=40, reduce_parallelism=4, retries=2, retry_delay=0.1)
class SpreadCount(MapReduce):
    def partition(self, context):
        return [{"n": n} for n in range(context.params["n"])]

    def map(self, partition, context):
        time.sleep(context.params.get("map_seconds", 0.0))
        SINK.record(f"{context.run_id}/{partition['n']}", context.attempt)
        return {"seen": [partition["n"]]}

    def combine(self, results, context):
        return {"seen": [n for r in results for n in r["seen"]]}

    def reduce(self, results, context):
        seen = sorted(n for r in results for n in r["seen"])
        return {"seen": seen, "total": sum(seen)}
