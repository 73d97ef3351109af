"""Guarantee: an orchestrator whose takeover read fails retries it; no run is left stranded.

A run waits on a durable retry timer when its engine stops. The next engine's first read of the
history (the rebuild when it takes the partitions over) fails. Criteria: the takeover is
retried, the timer is re-armed from the history and the run completes, each effect once.
Before the fix the failure was swallowed by the consumer group, the runs came back through the
poll path without their timers, and the run waited forever.
"""

from __future__ import annotations

from typing import Any

from deerflow import Engine, Workflow
from deerflow.eventstore import open_log
from tests.engine.apps.sink import Sink
from tests.reliability.faults import FaultyLog
from tests.services import unique_name


def flaky(sink: Sink) -> Workflow:
    wf = Workflow(name="flaky")

    @wf.task(id="call", retries=2, retry_delay=1.0)
    def call(context: Any) -> int:
        if context.attempt == 1:
            raise ConnectionError("service busy")
        sink.record(context.idempotency_key, context.attempt)
        return context.attempt

    return wf


async def test_a_failed_takeover_read_is_retried_and_the_retry_timer_still_fires(sink):
    url = f"memory://{unique_name('takeover')}"
    wf = flaky(sink)
    async with Engine(url, [wf]) as engine:
        run_id = (await engine.start(wf)).run_id
        waiting = await engine.index.wait(
            run_id, lambda s: "call" in s.tasks and s.tasks["call"].status == "retry_wait", 10
        )
        assert waiting is not None
    log = FaultyLog(open_log(url), failing_reads=1)
    async with Engine(log, [wf]) as engine:
        assert log.failing_reads == 0, "the injected failure was not hit"
        result = await engine.wait(run_id, timeout=20)
    assert result.status == "completed" and result.output == 2
    assert sink.effects() == sink.executions() == 1
