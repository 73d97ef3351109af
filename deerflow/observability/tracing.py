"""OpenTelemetry tracing: one trace per run, from its trigger through every task attempt.

Optional: ``pip install 'deerflow[otel]'`` and configure an SDK ``TracerProvider`` (with your
exporter) before starting deerflow; without them everything here costs nothing.

How one trace spans processes without a tracing backend of its own:

* **From the trigger.** A webhook request or Kafka message carrying a W3C ``traceparent``
  header keeps it in the run's trigger event (the gateway and the Kafka source record headers),
  so the run joins the caller's trace: same trace id, the run span a child of the caller's.
* **Ids every process can compute.** Without a caller, the trace id is derived from the run id;
  the run span's id always is. So a worker on any machine knows the parent of the attempt it
  runs from the task message alone (run id and trigger headers travel in every dispatch).
* **Task spans are live.** The worker runs each attempt inside a span ``task <id>`` (a child of
  the run span), current while the body runs, so the user's own instrumented calls nest there;
  :func:`current_traceparent` gives the header to pass on to services a task calls.
* **The run span** (``run <workflow>``, start to end of the run) is written when the run ends,
  with the derived id, by the process that orchestrates the run (:class:`RunTracer`, started
  by ``deerflow serve`` and :func:`instrument`).
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

from deerflow.core import RunState
from deerflow.core import history as h
from deerflow.core.traceparent import (
    TRACEPARENT,
    caller_traceparent,
    parse_traceparent,
    run_span_id,
    run_trace_id,
    run_traceparent,
)
from deerflow.runtime import Engine, Hooks, Plugin, TaskAttempt, TaskDispatch, WorkerStarting
from deerflow.runtime.integration import current_task

__all__ = [
    "TRACEPARENT",
    "TRACING",
    "RunTracer",
    "TracingHooks",
    "TracingPlugin",
    "caller_traceparent",
    "current_traceparent",
    "instrument",
    "parse_traceparent",
    "refresh_provider",
    "run_span_id",
    "run_trace_id",
    "run_traceparent",
    "traced",
]

log = logging.getLogger("deerflow.tracing")
T = TypeVar("T")
_chosen: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar(
    "deerflow_chosen_ids", default=None
)


def current_traceparent() -> str | None:
    """Inside a task body: the ``traceparent`` to send to the services the task calls.

    The live task span's when OpenTelemetry is recording, else the run span's.
    """
    try:
        from opentelemetry import trace
    except ImportError:
        trace = None  # type: ignore[assignment]
    if trace is not None:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            return f"00-{context.trace_id:032x}-{context.span_id:016x}-01"
    task = current_task.get(None)
    if task is None:
        return None
    return run_traceparent(task.run_id, task._dispatch.trigger, task._dispatch.traceparent)


def _parent(trace_id: str, span_id: str) -> Any:
    from opentelemetry import trace

    remote = trace.SpanContext(
        trace_id=int(trace_id, 16),
        span_id=int(span_id, 16),
        is_remote=True,
        trace_flags=trace.TraceFlags(1),
    )
    return trace.set_span_in_context(trace.NonRecordingSpan(remote))


_SDK_RECHECK = 1.0  # seconds: how late a TracerProvider set at run time is noticed
_sdk_seen: tuple[float, bool] = (float("-inf"), False)


def _sdk_configured() -> bool:
    """Whether an OpenTelemetry SDK provider is set; looked up at most once a second.

    ``get_tracer_provider()`` reads the environment on every call while none is set, which
    cost ~3 % of a worker's time per task attempt.
    """
    global _sdk_seen
    checked_at, configured = _sdk_seen
    now = time.monotonic()
    if now - checked_at < _SDK_RECHECK:
        return configured
    try:
        from opentelemetry import trace
    except ImportError:
        configured = False
    else:
        configured = not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    _sdk_seen = (now, configured)
    return configured


def refresh_provider() -> None:
    """Look for a TracerProvider again at the next task attempt (else within a second)."""
    global _sdk_seen
    _sdk_seen = (float("-inf"), False)


async def traced(dispatch: TaskDispatch, attempt: Awaitable[T]) -> T:
    """Await ``attempt`` (a task body) inside its span ``task <id>``, child of the run span."""
    if not _sdk_configured():
        return await attempt  # no SDK configured: spans would go nowhere, skip their cost
    from opentelemetry import trace

    tracer = trace.get_tracer("deerflow")
    trace_id = run_trace_id(dispatch.run_id, dispatch.trigger, dispatch.traceparent)
    parent = _parent(trace_id, run_span_id(dispatch.run_id))
    attributes: dict[str, str | int] = {
        "deerflow.run_id": dispatch.run_id,
        "deerflow.workflow": dispatch.workflow,
        "deerflow.task_id": dispatch.task_id,
        "deerflow.attempt": dispatch.attempt,
    }
    with tracer.start_as_current_span(
        f"task {dispatch.task_id}",
        context=parent,
        kind=trace.SpanKind.CONSUMER,
        attributes=attributes,
    ):
        return await attempt


class TracingHooks(Hooks):
    """Each task attempt inside its span; a TracerProvider set up before a worker starts is
    used from its first attempt."""

    def on_worker_start(self, event: WorkerStarting) -> None:
        """Look for a TracerProvider again."""
        refresh_provider()

    async def around_task(self, attempt: TaskAttempt) -> Any:
        """The attempt inside its span ``task <id>`` (when an SDK is configured)."""
        if not _sdk_configured():
            return await attempt.proceed()  # one coroutine less per attempt than traced()
        return await traced(attempt.dispatch, attempt.proceed())


class TracingPlugin(Plugin):
    """Contributes :class:`TracingHooks` (carried by every :class:`deerflow.Workflow`)."""

    def hooks(self) -> Sequence[Hooks]:
        """The tracing hooks."""
        return (TracingHooks(),)


TRACING = TracingPlugin()


class RunTracer:
    """Writes each run's span when it ends, in the process that orchestrates it.

    Needs an OpenTelemetry SDK ``TracerProvider`` (the span gets the id tasks already used as
    their parent, which only the SDK lets us choose); otherwise it does nothing. Costs one
    dictionary look-up per history event.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._tracer: Any = None
        self._active = False

    async def start(self) -> None:
        """Follow the run index; idempotent."""
        if self._active:
            return
        self._active = True
        await self.engine.index.start()
        self.engine.index.add_listener(self._on_event)

    async def stop(self) -> None:
        """Stop writing spans."""
        self._active = False

    def _owns(self, run_id: str) -> bool:
        orchestrator = self.engine.orchestrator
        return orchestrator is not None and orchestrator.knows(run_id)

    def _on_event(self, state: RunState, event: h.HistoryEvent) -> None:
        if not self._active or not state.terminal or event.type != _terminal_type(state):
            return
        if not self._owns(state.run_id):
            return
        if self._tracer is None:
            self._tracer = _sdk_tracer()  # looked up late: providers are often set up after
            if self._tracer is None:
                return
        from opentelemetry import trace

        caller = caller_traceparent(state.trigger, state.traceparent)
        context = _parent(*caller) if caller else None
        token = _chosen.set(
            (
                int(run_trace_id(state.run_id, state.trigger, state.traceparent), 16),
                int(run_span_id(state.run_id), 16),
            )
        )
        try:
            span = self._tracer.start_span(
                f"run {state.workflow}",
                context=context,
                kind=trace.SpanKind.SERVER,
                start_time=int((state.started_at or event.ts) * 1e9),
                attributes={
                    "deerflow.run_id": state.run_id,
                    "deerflow.workflow": state.workflow,
                    "deerflow.status": state.status,
                    "deerflow.parent_run_id": state.parent.run_id if state.parent else "",
                },
            )
        finally:
            _chosen.reset(token)
        if state.status != "completed":
            span.set_status(trace.Status(trace.StatusCode.ERROR, state.error or state.status))
        span.end(end_time=int((state.finished_at or event.ts) * 1e9))


def _terminal_type(state: RunState) -> str:
    return {
        "completed": "RunCompleted",
        "failed": "RunFailed",
        "cancelled": "RunCancelled",
        "compensated": "RunCompensated",
        "compensation_failed": "RunCompensationFailed",
    }.get(state.status, "")


def _sdk_tracer() -> Any:
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import Tracer, TracerProvider
        from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
    except ImportError:
        return None
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        return None

    class ChosenIds(RandomIdGenerator):
        """Random ids, except the run span's own, chosen while it is created."""

        def generate_span_id(self) -> int:
            chosen = _chosen.get()
            return chosen[1] if chosen else super().generate_span_id()

        def generate_trace_id(self) -> int:
            chosen = _chosen.get()
            return chosen[0] if chosen else super().generate_trace_id()

    tracer = provider.get_tracer("deerflow.runs")
    if not isinstance(tracer, Tracer):
        return None
    tracer.id_generator = ChosenIds()  # this tracer only: the user's keep their generator
    return tracer


async def instrument(engine: Engine) -> RunTracer:
    """Write run spans for the runs ``engine`` orchestrates (``deerflow serve`` does this)."""
    tracer = RunTracer(engine)
    await engine.add_service(tracer)
    return tracer
