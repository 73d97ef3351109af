"""Pipeline with backpressure: the spec's ``DataPipeline`` streaming 20,000 records.

    python examples/pipeline_backpressure.py [block|drop|sample]

extract (5 threads) -> transform (10 threads) -> load (3 threads, batches of 100). ``load``
is the slow part (a stand-in for a bulk insert), so the pipeline fills up: under ``block``
the feeder waits and every record is loaded; under ``drop`` or ``sample`` the overflow is let
go and counted. Either way at most ``max_buffer_size`` records are in flight at once, which
the printed ``peak_in_flight`` shows.

The workflow body below is the spec's sample as written (``stage`` needs no import inside a
``Pipeline`` class); ``fetch_record``, ``transform_record`` and ``bulk_insert`` are the user's
helpers, supplied here.
"""

from __future__ import annotations

import sys
import threading
import time

from deerflow import Backpressure, Pipeline, Workflow

STRATEGY = sys.argv[1] if __name__ == "__main__" and len(sys.argv) > 1 else "block"
TABLE: list[dict[str, object]] = []
_table_lock = threading.Lock()


def fetch_record(item: int) -> dict[str, object]:
    """Look the record up (here: make it)."""
    return {"id": item, "name": f"user-{item}", "score": item % 97}


def transform_record(record: dict[str, object]) -> dict[str, object]:
    """Normalise a record."""
    return {**record, "name": str(record["name"]).upper(), "passed": int(str(record["score"])) > 50}


def bulk_insert(batch: list[dict[str, object]]) -> int:
    """Insert a batch; slow on purpose (1 ms + 0.05 ms a row), like a real database."""
    time.sleep(0.001 + 0.00005 * len(batch))
    with _table_lock:
        TABLE.extend(batch)
    return len(batch)


# -- the spec's sample ------------------------------------------------------------------------

workflow = Workflow(name="streaming_pipeline")


@workflow.pipeline(
    backpressure=Backpressure(
        max_buffer_size=1000,
        strategy=STRATEGY,  # block, drop, or sample
    )
)
class DataPipeline(Pipeline):
    @stage(parallelism=5)
    def extract(self, item):
        return fetch_record(item)

    @stage(parallelism=10)
    def transform(self, record):
        return transform_record(record)

    @stage(parallelism=3, batch_size=100)
    def load(self, batch):
        return bulk_insert(batch)


# ----------------------------------------------------------------------------------------------


def main() -> None:
    """Stream 20,000 ids through and print what each stage did."""
    result = workflow.run(input=range(20_000))
    items = result.output["items"]
    print(
        f"{result.status}: strategy={items['strategy']} offered={items['offered']} "
        f"completed={items['completed']} dropped={items['dropped']} "
        f"peak_in_flight={items['peak_in_flight']} (bound {items['max_buffer_size']}) "
        f"in {items['elapsed_s']} s; rows in table: {len(TABLE)}"
    )
    for name, stage_metrics in result.output["stages"].items():
        print(
            f"  {name:<10} processed={stage_metrics['processed']:<6} "
            f"dropped={stage_metrics['dropped']:<6} calls={stage_metrics['calls']:<6} "
            f"peak_queue={stage_metrics['peak_queue_depth']:<5} "
            f"p50={stage_metrics['latency']['p50_ms']} ms"
        )


if __name__ == "__main__":
    main()
