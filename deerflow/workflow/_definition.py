"""The public Workflow class: the core definition composed with the features' mixins."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from deerflow.choreography import ChoreographyMixin
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
DEFAULT_PLUGINS = (MACHINE_PLUGIN, COMPENSATION_PLUGIN, WAIT_PLUGIN, EVENT_WAIT_PLUGIN)
use_by_default(*DEFAULT_PLUGINS)


class Workflow(
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
    """

    def __init__(
        self,
        name: str,
        *,
        version: str = "1",
        description: str = "",
        max_parallel: int | None = None,
        cancel_on: Iterable[CancelOn] | None = None,
    ) -> None:
        super().__init__(name, version=version, description=description, max_parallel=max_parallel)
        self.set_cancel_on(cancel_on)
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
