"""The public Workflow class: the core definition composed with the features' mixins."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from deerflow.choreography import ChoreographyMixin
from deerflow.flow import FLOW_PLUGIN, Batch, Concurrency, Debounce, FlowMixin, RateLimit
from deerflow.matching import EVENT_WAIT_PLUGIN, CancelOn, MatchingMixin
from deerflow.observability.tracing import TRACING
from deerflow.patterns import PatternsMixin
from deerflow.pipeline import PipelineMixin
from deerflow.runtime import RunResult
from deerflow.runtime.integration import run_sync
from deerflow.runtime.plugins import use_by_default
from deerflow.sagas import COMPENSATION_PLUGIN, SagaMixin
from deerflow.statemachine import MACHINE_PLUGIN, StateMachineMixin
from deerflow.waiting import WAIT_PLUGIN, WaitingMixin
from deerflow.workflow._catalog import remember

#: The plugins every engine adopts, whatever workflows it serves: the features whose history
#: events any process may have to fold without their definitions (a CLI, the run index, a
#: dashboard with no workflow loaded). Made default as ``deerflow`` is imported.
DEFAULT_PLUGINS = (MACHINE_PLUGIN, COMPENSATION_PLUGIN, WAIT_PLUGIN, EVENT_WAIT_PLUGIN, FLOW_PLUGIN)
use_by_default(*DEFAULT_PLUGINS)


class Workflow(
    FlowMixin,
    PatternsMixin,
    SagaMixin,
    StateMachineMixin,
    PipelineMixin,
    ChoreographyMixin,
    WaitingMixin,
    MatchingMixin,
):
    """A named DAG of tasks.

    Example::

        wf = Workflow(name="etl")

        @wf.task(id="extract")
        def extract(context):
            return {"rows": [1, 2, 3]}

        @wf.task(id="load", depends_on=["extract"], retries=3)
        async def load(context):
            return {"n": len(context.tasks["extract"].output["rows"])}

        result = wf.run()

    Args:
        name: unique name of the workflow; runs refer to it.
        version: bump when changing tasks of a workflow with runs in flight.
        description: free text shown by the CLI and dashboard.
        max_parallel: at most this many tasks of one run running at once (``None``: no
            limit); children of fan-outs, dynamic tasks and map-reduces count one each.
        cancel_on: cancel a run when a matching event arrives (:class:`~deerflow.CancelOn`).
        concurrency: at most this many running runs per key value, across all processes
            (:class:`~deerflow.Concurrency`); the others wait, queued, in order.
        rate_limit: at most this many runs start per period per key value
            (:class:`~deerflow.RateLimit`).
        debounce: one run per burst of runs of a key value, the latest
            (:class:`~deerflow.Debounce`); the earlier end ``superseded``.
        batch: one run for up to N runs of a key value requested together
            (:class:`~deerflow.Batch`, ``context.trigger_events``); the others end ``batched``.
    """

    def __init__(
        self,
        name: str,
        *,
        version: str = "1",
        description: str = "",
        max_parallel: int | None = None,
        cancel_on: Iterable[CancelOn] | None = None,
        concurrency: Concurrency | None = None,
        rate_limit: RateLimit | None = None,
        debounce: Debounce | None = None,
        batch: Batch | None = None,
    ) -> None:
        super().__init__(name, version=version, description=description, max_parallel=max_parallel)
        self.set_cancel_on(cancel_on)
        self.set_flow(
            concurrency=concurrency, rate_limit=rate_limit, debounce=debounce, batch=batch
        )
        self.plugins.insert(0, TRACING)  # every attempt in its span, when tracing is set up
        remember(self)  # compose_workflows(...) finds workflows by name

    def run(
        self,
        params: Mapping[str, Any] | None = None,
        *,
        input: Any = None,
        store: str | None = None,
        timeout: float | None = None,
        run_id: str | None = None,
    ) -> RunResult:
        """Run to completion on an embedded engine and return the result (blocking).

        ``store`` defaults to ``DEERFLOW_STORE``, else an SQLite file in the working directory.
        From async code use :class:`deerflow.Engine` instead.
        """
        if self._pipeline is not None:
            return self._run_pipeline(params, input=input, timeout=timeout, run_id=run_id)
        return run_sync(
            self, params=params, input=input, store=store, timeout=timeout, run_id=run_id
        )
