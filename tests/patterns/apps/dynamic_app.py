"""Dynamic tasks for a crash test: the generator and every generated task record themselves in
the sink named by $SINK_DB. ``square`` writes $STARTED_FILE, then waits while $HOLD_FILE exists.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from deerflow import DynamicTasks, Workflow
from tests.engine.apps.sink import Sink

SINK = Sink(os.environ["SINK_DB"])
workflow = Workflow(name="dynamic_restart")


@DynamicTasks.function
def square(x, context):
    started, hold = os.environ.get("STARTED_FILE"), os.environ.get("HOLD_FILE")
    if started:
        Path(started).write_text(context.task_id)
    while hold and Path(hold).exists():
        time.sleep(0.02)
    SINK.record(context.idempotency_key, context.attempt)
    return x * x


@workflow.dynamic_tasks(id="generate", max_parallel=2)
def generate(context):
    SINK.record(f"{context.run_id}/generator", context.attempt, str(time.time_ns()))
    specs = [DynamicTasks.call(f"square_{i}", "square", i) for i in range(4)]
    specs.append(DynamicTasks.python("script", "emit_json.py", ["ok", "from-worker"]))
    return specs


@workflow.task(id="total", depends_on=["generate"])
def total(context):
    outputs = context.dynamic_outputs["generate"]
    return {
        "squares": sum(v for k, v in outputs.items() if k.startswith("square_")),
        "script": outputs["script"]["args"],
    }
