"""Prometheus metrics of a deerflow process, served at ``/metrics`` by ``serve`` and ``ui``.

Run and task metrics are counted by a hook (:class:`MetricsPlugin`, adopted by the engine
when the metrics start) that sees every history event as the run index folds it (every
process folds the whole history), so they describe the whole deployment as its history
tells it, counted from when this process started: aggregate them across processes with
``max``, not ``sum``. Queue depth and consumer lag are this process's own (its worker's and
orchestrator's partitions): ``sum`` those.

===================================================  =========================================
``deerflow_runs_started_total{workflow}``            runs requested
``deerflow_runs_finished_total{workflow,status}``    runs ended: completed, failed, cancelled...
``deerflow_runs_retried_total{workflow}``            operator retries of failed runs
``deerflow_runs_running{workflow}``                  runs not ended now
``deerflow_task_duration_seconds{workflow,task,outcome}``  attempt durations (children of
                                                     expanded nodes count under the node)
``deerflow_task_retries_total{workflow,task}``       attempts after the first
``deerflow_task_queue_depth``                        task messages waiting or running here
``deerflow_consumer_lag{consumer}``                  history records the orchestrator has
                                                     not folded yet
``deerflow_dlq_messages{state}``                     dead letters, ``pending`` or ``replayed``
``deerflow_trigger_last_run_timestamp_seconds{trigger}``  when a trigger last started a run
``deerflow_webhook_responses_total{route,status}``   gateway answers by route and HTTP status
``deerflow_schedule_ticks_total{schedule,outcome}``  ticks this process handled: ``fired``,
                                                     ``missed`` (let go by ``catchup``) or
                                                     ``backfilled``
``deerflow_flow_runs_total{workflow,decision}``      runs through a flow-control gate:
                                                     ``queued``, ``admitted``, ``delayed`` (by
                                                     a rate limit or debounce), ``dropped``,
                                                     ``superseded`` or ``batched``
``deerflow_flow_queued{workflow}``                   runs waiting for their gate now
===================================================  =========================================
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter as Counter_
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from deerflow.core import RunState
from deerflow.core import history as h
from deerflow.core.expand import node_of
from deerflow.core.state import status_of
from deerflow.log.base import LogReader, TopicPartition
from deerflow.runtime import Engine, Hooks, Plugin
from deerflow.runtime.hooks import HistoryFolded, ScheduleTicks
from deerflow.runtime.integration import RunQuery

__all__ = [
    "CONTENT_TYPE",
    "DURATION_BUCKETS",
    "EngineMetrics",
    "MetricsPlugin",
]

log = logging.getLogger("deerflow.metrics")

#: the status of a run waiting for its flow-control gate, and the gate's history events
#: (by type: a feature's events, read without importing it) -> what each counts as
_QUEUED = "queued"
_FLOW_DECISIONS = {
    "RunQueued": "queued",
    "RunAdmitted": "admitted",
    "RunDropped": "dropped",
    "RunSuperseded": "superseded",
    "RunBatched": "batched",
}

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DURATION_BUCKETS = (
    0.005,
    0.025,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
    3600.0,
)
_REPLAY_HEADER = "deerflow-replay-of"


class EngineMetrics(Collector):
    """The metrics of one engine, in a registry of their own (one per engine, so tests and
    several engines in one process do not collide).

    Args:
        engine: the engine to observe.
        dlq_interval: seconds between looks at the dead-letter topic.
    """

    def __init__(self, engine: Engine, *, dlq_interval: float = 5.0) -> None:
        self.engine = engine
        self.registry = CollectorRegistry(auto_describe=True)
        self._dlq_interval = dlq_interval
        self._since = time.time()
        self._running: dict[str, str] = {}
        #: runs waiting for their flow-control gate -> workflow (as bounded as ``_running``)
        self._queued: dict[str, str] = {}
        self._last_trigger: dict[str, float] = {}
        self._dlq = {"pending": 0, "replayed": 0}
        self._dlq_task: asyncio.Task[None] | None = None
        self._active = False
        r = self.registry
        self.runs_started = Counter(
            "deerflow_runs_started", "Runs requested.", ["workflow"], registry=r
        )
        self.runs_finished = Counter(
            "deerflow_runs_finished",
            "Runs ended, by final status.",
            ["workflow", "status"],
            registry=r,
        )
        self.runs_retried = Counter(
            "deerflow_runs_retried", "Operator retries of failed runs.", ["workflow"], registry=r
        )
        self.task_duration = Histogram(
            "deerflow_task_duration_seconds",
            "Task attempt durations.",
            ["workflow", "task", "outcome"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.task_retries = Counter(
            "deerflow_task_retries",
            "Task attempts after the first.",
            ["workflow", "task"],
            registry=r,
        )
        self.webhook_responses = Counter(
            "deerflow_webhook_responses",
            "Webhook gateway answers.",
            ["route", "status"],
            registry=r,
        )
        self.schedule_ticks = Counter(
            "deerflow_schedule_ticks",
            "Schedule ticks this process fired, let go after downtime (missed) or backfilled.",
            ["schedule", "outcome"],
            registry=r,
        )
        self.flow_runs = Counter(
            "deerflow_flow_runs",
            "Runs through a flow-control gate: queued, admitted, delayed, dropped.",
            ["workflow", "decision"],
            registry=r,
        )
        r.register(self)
        self.plugin = MetricsPlugin(self)

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Follow the run index and the dead-letter topic; idempotent."""
        if self._active:
            return
        self._active = True
        self._since = time.time()
        await self.engine.index.sync()
        for state in await self.engine.index.summaries(RunQuery(status="running", limit=None)):
            self._running[state.run_id] = state.workflow
        for state in await self.engine.index.summaries(RunQuery(status="parked", limit=None)):
            self._running[state.run_id] = state.workflow
        for state in await self.engine.index.summaries(RunQuery(status=_QUEUED, limit=None)):
            self._running[state.run_id] = self._queued[state.run_id] = state.workflow
        self.engine.add_plugin(self.plugin)
        self._dlq_task = asyncio.create_task(self._follow_dlq(), name="deerflow-metrics-dlq")

    async def stop(self) -> None:
        """Stop following (the engine keeps the plugin, whose hook then does nothing)."""
        self._active = False
        if self._dlq_task is not None:
            self._dlq_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dlq_task
            self._dlq_task = None

    def render(self) -> bytes:
        """The metrics in Prometheus' text format."""
        return generate_latest(self.registry)

    # -- from the history ------------------------------------------------------------------------

    def _on_event(self, state: RunState, event: h.HistoryEvent) -> None:
        if not self._active:
            return
        self._track(state)
        if event.ts < self._since:
            return  # the index catching up on old history: counted by whoever saw it live
        wf = state.workflow
        self._count_flow(wf, event)
        if isinstance(event, h.RunRequested):
            self.runs_started.labels(wf).inc()
            trigger = (event.trigger or {}).get("trigger")
            if trigger:
                self._last_trigger[str(trigger)] = event.ts
        elif event.type in h.TERMINAL_TYPES:
            self.runs_finished.labels(wf, state.status).inc()
        elif isinstance(event, h.RunRetryRequested):
            self.runs_retried.labels(wf).inc()
        elif isinstance(event, h.TaskScheduled) and event.attempt > 1:
            self.task_retries.labels(wf, _task_label(event.task_id)).inc()
        elif isinstance(event, (h.TaskCompleted, h.TaskFailed)) and event.started_at:
            outcome = "completed" if isinstance(event, h.TaskCompleted) else "failed"
            self.task_duration.labels(wf, _task_label(event.task_id), outcome).observe(
                max(0.0, event.ts - event.started_at)
            )

    def _count_flow(self, workflow: str, event: h.HistoryEvent) -> None:
        """A gate's decision (RunDropped also ends the run: counted as finished too)."""
        decision = _FLOW_DECISIONS.get(event.type)
        if decision is not None:
            if getattr(event, "not_before", None) is not None:
                decision = "delayed"
            self.flow_runs.labels(workflow, decision).inc()

    def _track(self, state: RunState) -> None:
        """Keep the runs not ended, and those waiting for their gate, for the gauges."""
        if state.terminal:
            self._running.pop(state.run_id, None)
        else:
            self._running[state.run_id] = state.workflow
        if status_of(state) == _QUEUED:
            self._queued[state.run_id] = state.workflow
        else:
            self._queued.pop(state.run_id, None)

    # -- the dead-letter topic ------------------------------------------------------------------

    async def _follow_dlq(self) -> None:
        reader: LogReader | None = None
        try:
            topic = self.engine.topics.dlq
            count = await self.engine.log.partition_count(topic)
            reader = self.engine.log.reader({TopicPartition(topic, p): 0 for p in range(count)})
            await reader.start()
            while True:
                await self._count_dlq(reader)
                await asyncio.sleep(self._dlq_interval)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("metrics: cannot follow the dead-letter topic", exc_info=True)
        finally:
            if reader is not None:
                await reader.stop()

    async def _count_dlq(self, reader: LogReader) -> None:
        while records := await reader.poll(timeout=0.2, max_records=5000):
            for record in records:
                if any(name == _REPLAY_HEADER for name, _ in record.headers):
                    self._dlq["replayed"] += 1
                    self._dlq["pending"] -= 1
                else:
                    self._dlq["pending"] += 1

    # -- gauges, computed when scraped -----------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        """Gauges read at scrape time (the Prometheus client calls this)."""
        running = GaugeMetricFamily("deerflow_runs_running", "Runs not ended.", labels=["workflow"])
        by_workflow: dict[str, int] = {}
        for workflow in self._running.values():
            by_workflow[workflow] = by_workflow.get(workflow, 0) + 1
        for workflow, n in sorted(by_workflow.items()):
            running.add_metric([workflow], n)
        yield running
        queued = GaugeMetricFamily(
            "deerflow_flow_queued", "Runs waiting for their flow-control gate.", labels=["workflow"]
        )
        for workflow, n in sorted(Counter_(self._queued.values()).items()):
            queued.add_metric([workflow], n)
        yield queued
        worker, orchestrator = self.engine.worker, self.engine.orchestrator
        yield GaugeMetricFamily(
            "deerflow_task_queue_depth",
            "Task messages waiting or running in this process's partitions.",
            value=worker.backlog() if worker is not None else 0,
        )
        lag = GaugeMetricFamily(
            "deerflow_consumer_lag", "Records not consumed yet.", labels=["consumer"]
        )
        lag.add_metric(["orchestrator"], orchestrator.lag() if orchestrator is not None else 0)
        yield lag
        yield GaugeMetricFamily(
            "deerflow_held_runs",
            "Run states this process's orchestrator holds in memory (at most max_held_runs, "
            "as far as idle runs can be evicted).",
            value=orchestrator.held_runs if orchestrator is not None else 0,
        )
        yield GaugeMetricFamily(
            "deerflow_evicted_runs",
            "Live runs evicted from the orchestrator's memory until a record concerns them.",
            value=orchestrator.evicted_runs if orchestrator is not None else 0,
        )
        dlq = GaugeMetricFamily("deerflow_dlq_messages", "Dead letters.", labels=["state"])
        for state, n in sorted(self._dlq.items()):
            dlq.add_metric([state], n)
        yield dlq
        last = GaugeMetricFamily(
            "deerflow_trigger_last_run_timestamp_seconds",
            "When a trigger last started a run.",
            labels=["trigger"],
        )
        for trigger, ts in sorted(self._last_trigger.items()):
            last.add_metric([trigger], ts)
        yield last


class _Counting(Hooks):
    def __init__(self, metrics: EngineMetrics) -> None:
        self.metrics = metrics

    def on_history_event(self, folded: HistoryFolded) -> None:
        self.metrics._on_event(folded.state, folded.event)

    def on_schedule_ticks(self, ticks: ScheduleTicks) -> None:
        if not self.metrics._active:
            return
        counter = self.metrics.schedule_ticks
        for outcome, n in (
            ("fired", ticks.fired),
            ("missed", ticks.missed),
            ("backfilled", ticks.backfilled),
        ):
            if n:
                counter.labels(ticks.schedule, outcome).inc(n)


class MetricsPlugin(Plugin):
    """Counts runs and task attempts of :class:`EngineMetrics` from the history's events, and
    the schedule ticks this process handles."""

    def __init__(self, metrics: EngineMetrics) -> None:
        self.metrics = metrics

    def hooks(self) -> Sequence[Hooks]:
        """The hook that counts."""
        return (_Counting(self.metrics),)


def _task_label(task_id: str) -> str:
    """Children of expanded nodes (``node/child``) count under their node: bounded labels."""
    return node_of(task_id) or task_id
