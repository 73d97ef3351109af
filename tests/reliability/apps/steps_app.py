"""A 3-step workflow whose steps record their effect in the sink named by ``$SINK_DB``.

Each step sleeps ``$STEP_SLEEP`` seconds (default 0.02) so that kills land mid-run. Every
start of a body is recorded too, in ``$SINK_DB.starts``, so a test can count bodies a kill
interrupted (started, never finished).
"""

from __future__ import annotations

import os
import time

from deerflow import Workflow
from tests.engine.apps.sink import Sink

SINK = Sink(os.environ["SINK_DB"])
STARTS = Sink(os.environ["SINK_DB"] + ".starts")
PAUSE = float(os.environ.get("STEP_SLEEP", "0.02"))
workflow = Workflow(name="three_steps")


def _effect(context, value: int) -> dict[str, int]:
    STARTS.record(f"{context.attempt_key}/{os.getpid()}/{time.monotonic_ns()}", context.attempt)
    time.sleep(PAUSE)
    SINK.record(context.idempotency_key, context.attempt, str(value))
    return {"n": value}


@workflow.task(id="extract")
def extract(context):
    return _effect(context, context.params["n"])


@workflow.task(id="transform", depends_on=["extract"])
def transform(context):
    return _effect(context, context.tasks["extract"].output["n"] + 1)


@workflow.task(id="load", depends_on=["transform"])
def load(context):
    return _effect(context, context.tasks["transform"].output["n"] + 1)
