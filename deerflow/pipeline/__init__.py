"""Streaming pipelines with bounded buffers and backpressure.

A :class:`Pipeline` subclass declares ``@stage`` methods; ``@workflow.pipeline(...)`` attaches
it to a workflow with a :class:`Backpressure` bound, a source and sinks. Items stream through
the stages concurrently (sync stages in threads, async ones on the loop; batch stages receive
lists), each stage with its own parallelism, retries and metrics.

Bounded memory
    At most ``max_buffer_size`` items are in flight in the whole pipeline (buffers, stages,
    partial batches), whatever the source does; ``block``, ``drop`` or ``sample`` decide what
    happens to an item offered when that many are in flight (see :class:`Backpressure`).

Ordering guarantees
    * A stage with ``parallelism=1`` handles items in the order it receives them, and a chain
      of such stages keeps the source's order end to end.
    * With ``parallelism > 1`` items may overtake each other, unless the stage is
      ``ordered=True``: then each key's items go to one worker (CRC-32 of the key, modulo the
      parallelism) and pass that stage in order; a failing item is retried in place, so later
      items of its key wait. Per-key order holds end to end when every stage with
      ``parallelism > 1`` is ordered. Keys come from the source (the Kafka record key) or the
      pipeline's ``key=`` function.
    * A Kafka source reads each partition in order; its offsets are committed only up to the
      first item not yet finished (completed, dead-lettered or dropped), so a crash redelivers
      every unfinished item: at-least-once.
    * ``sample`` keeps kept items in arrival order; dropped and skipped items are gone.

Errors
    A failing item is retried per its stage's ``retries``, then handed with its reason to the
    dead-letter sink, and the pipeline flows on. A batch that fails for good dead-letters each
    of its items. Graceful stop (``PipelineRuntime.stop``, SIGTERM under ``deerflow serve``)
    stops the source, drains everything in flight, and only then commits.
"""

from typing import TYPE_CHECKING, Any

from deerflow.pipeline._api import PipelineMixin, run_pipeline
from deerflow.pipeline._backpressure import Backpressure, Intake
from deerflow.pipeline._io import DeadLetter, Output, PipelineContext, Sink, Source
from deerflow.pipeline._pipeline import Pipeline
from deerflow.pipeline._runtime import PipelineError, PipelineReport, PipelineRuntime
from deerflow.pipeline._sinks import CallableSink, LogSink
from deerflow.pipeline._sources import IterableSource
from deerflow.pipeline._stage import StageOptions, stage

if TYPE_CHECKING:
    from deerflow.pipeline._kafka import KafkaSink, KafkaSource
    from deerflow.pipeline._s3 import S3Source

__all__ = [
    "Backpressure",
    "CallableSink",
    "DeadLetter",
    "Intake",
    "IterableSource",
    "KafkaSink",
    "KafkaSource",
    "LogSink",
    "Output",
    "Pipeline",
    "PipelineContext",
    "PipelineError",
    "PipelineMixin",
    "PipelineReport",
    "PipelineRuntime",
    "S3Source",
    "Sink",
    "Source",
    "StageOptions",
    "run_pipeline",
    "stage",
]


def __getattr__(name: str) -> Any:
    # Imported on first use: the Kafka and S3 parts need their optional extras.
    if name in ("KafkaSource", "KafkaSink"):
        from deerflow.pipeline import _kafka

        return getattr(_kafka, name)
    if name == "S3Source":
        from deerflow.pipeline._s3 import S3Source

        return S3Source
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
