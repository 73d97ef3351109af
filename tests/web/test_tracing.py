"""OpenTelemetry: a run is one trace, from the caller of its webhook through every task."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from deerflow import Workflow
from deerflow.tracing import current_traceparent, refresh_provider, run_span_id, run_trace_id
from tests.web.conftest import Deployment

CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"


@pytest.fixture
def spans() -> Iterator[Any]:
    """Finished spans of this test (an SDK provider is installed once per test session)."""
    trace = pytest.importorskip("opentelemetry.trace")
    sdk = pytest.importorskip("opentelemetry.sdk.trace")
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    if not isinstance(trace.get_tracer_provider(), sdk.TracerProvider):
        trace.set_tracer_provider(sdk.TracerProvider())
    refresh_provider()  # engines of earlier tests looked a moment ago and found none
    exporter = InMemorySpanExporter()
    trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()  # later tests' spans are dropped, not kept in memory


def of_run(exporter: Any, run_id: str) -> list[Any]:
    return [
        s for s in exporter.get_finished_spans() if s.attributes.get("deerflow.run_id") == run_id
    ]


async def test_a_webhook_run_joins_the_callers_trace_with_a_span_per_attempt(
    deployment: Deployment, spans: Any
):
    run_id = await deployment.webhook(traceparent=f"00-{CALLER_TRACE}-{CALLER_SPAN}-01")
    await deployment.wait(run_id)

    found = of_run(spans, run_id)
    (run_span,) = [s for s in found if s.name == "run etl"]
    tasks = {s.name: s for s in found if s.name.startswith("task ")}
    assert set(tasks) >= {
        "task split",
        "task square",
        "task square/0",
        "task square/4",
        "task fragile",
    }
    assert run_span.context.trace_id == int(CALLER_TRACE, 16)
    assert run_span.parent.span_id == int(CALLER_SPAN, 16)
    assert run_span.context.span_id == int(run_span_id(run_id), 16)
    assert run_span.status.status_code.name == "ERROR"
    for span in tasks.values():
        assert span.context.trace_id == int(CALLER_TRACE, 16)
        assert span.parent.span_id == run_span.context.span_id
        assert run_span.start_time <= span.start_time <= span.end_time <= run_span.end_time
    assert tasks["task fragile"].status.status_code.name == "ERROR"
    assert tasks["task split"].status.status_code.name != "ERROR"


async def test_without_a_caller_the_trace_id_comes_from_the_run_id(
    deployment: Deployment, spans: Any
):
    wf = Workflow(name="traced")

    @wf.task(id="ask")
    def ask(context):
        return current_traceparent()  # what a task sends to the services it calls

    deployment.engine.register(wf)
    run_id = (await deployment.engine.start(wf)).run_id
    state = await deployment.wait(run_id)
    assert state.status == "completed"
    (task_span,) = [s for s in of_run(spans, run_id) if s.name == "task ask"]
    assert task_span.context.trace_id == int(run_trace_id(run_id, None), 16)
    assert state.output == (
        f"00-{task_span.context.trace_id:032x}-{task_span.context.span_id:016x}-01"
    )


async def test_a_child_run_continues_its_parents_trace_under_the_parent_run_span(
    deployment: Deployment, spans: Any
):
    child = Workflow(name="traced_child")

    @child.task(id="inner")
    def inner(context):
        return current_traceparent()

    parent = Workflow(name="traced_parent")
    parent.sub_workflow(id="delegate", workflow=child)(lambda context: None)
    for wf in (child, parent):
        deployment.engine.register(wf)

    caller = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
    run_id = (
        await deployment.engine.start(
            parent, trigger={"type": "webhook", "headers": {"traceparent": caller}}
        )
    ).run_id
    assert (await deployment.wait(run_id)).status == "completed"
    child_id = f"{run_id}.delegate.1"
    await deployment.wait(child_id)
    for _ in range(200):  # run spans are written as the runs end
        if (
            len(
                [
                    s
                    for s in of_run(spans, run_id) + of_run(spans, child_id)
                    if s.name.startswith("run ")
                ]
            )
            == 2
        ):
            break
        await asyncio.sleep(0.02)
    (parent_span,) = [s for s in of_run(spans, run_id) if s.name == "run traced_parent"]
    (child_span,) = [s for s in of_run(spans, child_id) if s.name == "run traced_child"]
    (inner_span,) = [s for s in of_run(spans, child_id) if s.name == "task inner"]
    trace_id = int(CALLER_TRACE, 16)
    assert parent_span.context.trace_id == child_span.context.trace_id == trace_id
    assert inner_span.context.trace_id == trace_id
    assert child_span.parent.span_id == parent_span.context.span_id
    assert inner_span.parent.span_id == child_span.context.span_id
