"""A 3-step workflow whose steps record their effects in the sink named by $SINK_DB.

``slow`` blocks while the file named by $HOLD_FILE exists, after writing $STARTED_FILE, so a
test can kill the process in the middle of it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from sink import Sink  # type: ignore[import-not-found]

from deerflow import Workflow

SINK = Sink(os.environ["SINK_DB"])
workflow = Workflow(name="three_steps")


@workflow.task(id="first")
def first(context):
    SINK.record(context.idempotency_key, context.attempt)
    return {"n": context.params.get("n", 0)}


@workflow.task(id="slow", depends_on=["first"])
def slow(context):
    started, hold = os.environ.get("STARTED_FILE"), os.environ.get("HOLD_FILE")
    if started:
        Path(started).write_text(context.run_id)
    while hold and Path(hold).exists():
        time.sleep(0.02)
    SINK.record(context.idempotency_key, context.attempt)
    return {"n": context.tasks["first"].output["n"] + 1}


@workflow.task(id="last", depends_on=["slow"])
def last(context):
    SINK.record(context.idempotency_key, context.attempt)
    return {"n": context.tasks["slow"].output["n"] + 1}
