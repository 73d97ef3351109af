"""Structured logs: a task's log lines carry its run and task ids, as JSON when asked."""

from __future__ import annotations

import io
import json
import logging

from deerflow import Engine, Workflow
from deerflow.logs import JsonFormatter, RunContextFilter
from tests.services import unique_name


async def test_lines_logged_inside_a_task_carry_its_run_and_task_ids():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RunContextFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tests.user_code")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    wf = Workflow(name="chatty")

    @wf.task(id="talk")
    def talk(context):  # a sync body: it runs in a worker thread
        logger.info("loaded %d rows", 3)

    try:
        async with Engine(f"memory://{unique_name('logs')}", [wf]) as engine:
            run_id = (await engine.start(wf)).run_id
            assert (await engine.wait(run_id, timeout=30)).ok
        logger.warning("outside any task")
    finally:
        logger.removeHandler(handler)
    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert inside["message"] == "loaded 3 rows" and inside["level"] == "INFO"
    assert (inside["run_id"], inside["task_id"], inside["attempt"]) == (run_id, "talk", 1)
    assert inside["workflow"] == "chatty"
    assert "run_id" not in outside and outside["message"] == "outside any task"
