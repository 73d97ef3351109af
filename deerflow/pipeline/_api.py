"""``Workflow.pipeline``: declaring a workflow's streaming pipeline, and running it.

A workflow with a pipeline has no DAG tasks: ``workflow.run(input=items)`` streams the items
through the pipeline (no event-log history is written; the pipeline is a streaming runtime,
not a durable run) and returns a :class:`~deerflow.RunResult` whose ``output`` is the
pipeline's report and whose ``tasks`` hold each stage's metrics. Under ``deerflow serve`` a
pipeline whose source runs until stopped (a Kafka topic, an SQS queue of S3 events) runs as
a service of the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, overload

from deerflow.core import WorkflowDef
from deerflow.errors import DefinitionError
from deerflow.pipeline._backpressure import Backpressure
from deerflow.pipeline._pipeline import Pipeline, PipelineSpec
from deerflow.pipeline._runtime import PipelineReport, PipelineRuntime
from deerflow.pipeline._service import PIPELINES
from deerflow.runtime import RunResult, TaskResult
from deerflow.runtime.integration import ensure_loop_free

P = TypeVar("P", bound=type[Pipeline])


class PipelineMixin(WorkflowDef):
    """Adds ``Workflow.pipeline``; a workflow with a pipeline carries the plugin that serves it."""

    _pipeline: PipelineSpec | None = None

    @overload
    def pipeline(self, cls: P, /) -> P: ...

    @overload
    def pipeline(
        self,
        cls: None = None,
        /,
        *,
        backpressure: Backpressure | None = None,
        source: Any = None,
        sink: Any = None,
        dead_letter: Any = None,
        key: Callable[[Any], Any] | None = None,
    ) -> Callable[[P], P]: ...

    def pipeline(
        self,
        cls: P | None = None,
        /,
        *,
        backpressure: Backpressure | None = None,
        source: Any = None,
        sink: Any = None,
        dead_letter: Any = None,
        key: Callable[[Any], Any] | None = None,
    ) -> P | Callable[[P], P]:
        """Make this workflow a streaming pipeline of ``cls``'s ``@stage`` methods.

        Args:
            backpressure: the in-flight bound and strategy (default ``Backpressure()``: 1000
                items, ``block``).
            source: what feeds it when ``run`` gets no ``input``: an iterable, an async
                iterable or a ``Source`` (``KafkaSource``, ``S3Source``).
            sink: where the last stage's outputs go: a callable or a ``Sink``
                (``KafkaSink``, ``LogSink``); default: they are discarded.
            dead_letter: where items that failed for good go (a callable or a ``Sink``);
                default: a warning in the log (under ``deerflow serve``: the engine's
                dead-letter topic).
            key: a function of an item giving its key for ``ordered`` stages (default: the
                source's key, e.g. the Kafka record key).
        """

        def register(pipeline_cls: P) -> P:
            where = f"workflow {self.name!r}"
            if self._pipeline is not None:
                raise DefinitionError(f"{where} already has a pipeline")
            spec = PipelineSpec(
                pipeline_cls, backpressure or Backpressure(), source, sink, dead_letter, key
            )
            spec.validate(where)
            self._pipeline = spec
            self._check_pipeline()
            if PIPELINES not in self.plugins:
                self.plugins.append(PIPELINES)  # `deerflow serve` runs its lasting source
            return pipeline_cls

        return register(cls) if cls is not None else register

    def has_body(self) -> bool:
        """A pipeline workflow is valid without tasks."""
        return self._pipeline is not None or super().has_body()

    def start_refusal(self) -> str | None:
        """A pipeline has no runs in the history: it streams."""
        if self._pipeline is not None:
            return (
                f"workflow {self.name!r} is a streaming pipeline: feed it with "
                "workflow.run(input=...) or run it under `deerflow serve`"
            )
        return super().start_refusal()

    def _check_pipeline(self) -> None:
        """``Workflow.validate`` for a pipeline workflow: it must have no DAG tasks."""
        if self._pipeline is not None and self._tasks:
            raise DefinitionError(
                f"workflow {self.name!r} has a pipeline and tasks ({', '.join(self._tasks)});"
                " a pipeline workflow has no tasks: use two workflows"
            )

    def is_pipeline(self) -> bool:
        """Whether this workflow streams (a pipeline) rather than runs in the history."""
        return self._pipeline is not None

    async def stream(
        self,
        params: Mapping[str, Any] | None = None,
        *,
        input: Any = None,
        timeout: float | None = None,
        run_id: str | None = None,
        drain_timeout: float | None = None,
    ) -> RunResult:
        """Stream ``input`` (else the declared source) through this pipeline (see
        :func:`run_pipeline`); from async code, what ``run`` does for a pipeline.

        ``drain_timeout``: seconds the items in flight at the end may take to finish before
        they are abandoned (default the pipeline runtime's, 30).
        """
        return await run_pipeline(
            self,
            params=params,
            input=input,
            timeout=timeout,
            run_id=run_id,
            drain_timeout=drain_timeout,
        )

    def _run_pipeline(
        self,
        params: Mapping[str, Any] | None,
        *,
        input: Any,
        timeout: float | None,
        run_id: str | None,
    ) -> RunResult:
        """``Workflow.run`` for a pipeline workflow (blocking)."""
        ensure_loop_free()
        return asyncio.run(
            run_pipeline(self, params=params, input=input, timeout=timeout, run_id=run_id)
        )


async def run_pipeline(
    workflow: PipelineMixin,
    *,
    params: Mapping[str, Any] | None = None,
    input: Any = None,
    timeout: float | None = None,
    run_id: str | None = None,
    **overrides: Any,
) -> RunResult:
    """Stream ``input`` (else the declared source) through ``workflow``'s pipeline.

    Returns when the input is exhausted and drained; after ``timeout`` seconds it stops
    gracefully (in-flight items drain) and the result is ``cancelled``. ``overrides`` replace
    declared parts (``sink=``, ``dead_letter=``, ``backpressure=``...).
    """
    spec = workflow._pipeline
    if spec is None:
        raise DefinitionError(f"workflow {workflow.name!r} has no pipeline")
    runtime = PipelineRuntime.from_spec(
        spec, name=workflow.name, source=input, params=params, **overrides
    )
    if input is None and getattr(runtime.spec.source, "unbounded", False) and timeout is None:
        raise DefinitionError(
            f"workflow {workflow.name!r}: its source runs until stopped; give run() a timeout,"
            " or serve it with `deerflow serve`"
        )
    async with runtime:
        with contextlib.suppress(TimeoutError):  # leaving the block stops it gracefully
            await runtime.join(timeout)
    return to_run_result(workflow, runtime.report(), run_id or uuid.uuid4().hex, params)


def to_run_result(
    workflow: PipelineMixin,
    report: PipelineReport,
    run_id: str,
    params: Mapping[str, Any] | None = None,
) -> RunResult:
    """A pipeline report as a :class:`~deerflow.RunResult`: one task per stage."""
    return RunResult(
        run_id=run_id,
        workflow=workflow.name,
        version=workflow.version,
        status=report.status,
        output=report.output(),
        error=report.error,
        params=dict(params or {}),
        started_at=report.started_at,
        finished_at=report.finished_at,
        tasks={name: _stage_result(report, metrics) for name, metrics in report.stages.items()},
    )


def _stage_result(report: PipelineReport, metrics: dict[str, Any]) -> TaskResult:
    status = {"running": "running", "failed": "failed"}.get(report.status, "completed")
    return TaskResult(
        status=status,
        output=metrics,
        error=metrics["last_error"],
        attempts=metrics["calls"],
        started_at=report.started_at,
        finished_at=report.finished_at,
    )
