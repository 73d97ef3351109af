"""Pipelines under ``deerflow serve``: one engine service per pipeline with a lasting source.

Every process that serves the workflow runs the pipeline; a Kafka source's consumer group
splits the topic's partitions among them, so adding processes adds throughput.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from deerflow.core import WorkflowDef
from deerflow.pipeline._io import PipelineContext
from deerflow.pipeline._runtime import PipelineRuntime
from deerflow.pipeline._sinks import LogSink
from deerflow.runtime import Engine, Plugin, Service

log = logging.getLogger("deerflow.pipeline")


class PipelineService:
    """Runs one workflow's pipeline for as long as the engine runs.

    Dead letters go to the engine's dead-letter topic unless the pipeline names a sink.
    """

    def __init__(self, engine: Engine, workflow: WorkflowDef) -> None:
        spec = _spec(workflow)
        assert spec is not None
        context = PipelineContext(name=workflow.name, log=engine.log)
        dead_letter = spec.dead_letter or LogSink(engine.topics.dlq, engine.log)
        self.workflow = workflow
        self.runtime = PipelineRuntime.from_spec(
            spec, name=workflow.name, dead_letter=dead_letter, context=context
        )

    async def start(self) -> None:
        """Start the pipeline (idempotent)."""
        await self.runtime.start()
        log.info(
            "pipeline %s: serving from %s", self.workflow.name, type(self.runtime.source).__name__
        )

    async def stop(self) -> None:
        """Stop taking input, drain what is in flight, commit; idempotent."""
        report = await self.runtime.stop()
        if report is not None:
            log.info("pipeline %s stopped: %s", self.workflow.name, report.items)


def serves(workflow: WorkflowDef) -> bool:
    """Whether ``deerflow serve`` runs ``workflow``'s pipeline (its source never runs out)."""
    spec = _spec(workflow)
    return spec is not None and bool(getattr(spec.source, "unbounded", False))


def _spec(workflow: WorkflowDef) -> Any:
    return getattr(workflow, "_pipeline", None)  # PipelineMixin's; any definition may come here


class PipelinePlugin(Plugin):
    """Carried by every workflow with a pipeline: the engine runs one service per pipeline
    whose source lasts (a Kafka topic, an SQS queue of S3 events)."""

    def services(self, engine: Engine) -> Iterable[Service]:
        """One :class:`PipelineService` per served pipeline of the engine's workflows."""
        return [PipelineService(engine, wf) for wf in engine.registry if serves(wf)]


PIPELINES = PipelinePlugin()
