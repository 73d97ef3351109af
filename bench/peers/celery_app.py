"""The Celery app of scenario f: broker and result backend on ``$BENCH_REDIS_URL``.

Run by ``celery -A bench.peers.celery_app worker --pool threads --concurrency C``; the driver
sends chains (``chain`` of ``noop``), groups (fan-out) and groups of ``sleepy`` (I/O maps).
Acknowledgement is late (after the task ran), the closest Celery comes to "nothing is lost
when a worker dies".
"""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Celery

app = Celery(
    "deerflow_bench",
    broker=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379"),
    backend=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379"),
)
app.conf.update(
    task_acks_late=True,
    worker_prefetch_multiplier=4,
    result_expires=600,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="bench.noop")  # type: ignore[untyped-decorator]
def noop(previous: Any = None) -> int:
    """A task that does nothing (takes the previous result in a chain)."""
    return 0


@app.task(name="bench.sleepy")  # type: ignore[untyped-decorator]
def sleepy(delay: float) -> float:
    """A task standing for a remote call."""
    time.sleep(delay)
    return delay
