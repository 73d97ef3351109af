"""The streaming runtime: a source, the stages, a sink, wired by bounded in-flight permits.

::

    source --offer--> Intake --> [stage 1 input] -> workers -> [stage 2 input] -> ... -> sink
                        ^ permits: max_buffer_size                                        |
                        +----------------- released when an item is done ------------------+

It owns asyncio tasks and threads only; it knows nothing of the DAG engine. End of input flows
down the chain: when the source ends, the first input closes; when a stage's workers have
drained a closed input, the next input closes; and so on to the sink. A graceful
:meth:`PipelineRuntime.stop` is the same thing started early: the source stops offering,
everything admitted drains, and only then is the source closed (committing its offsets).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Self

from deerflow.errors import DeerflowError
from deerflow.pipeline._backpressure import Backpressure, Intake
from deerflow.pipeline._buffer import StageInput
from deerflow.pipeline._envelope import Envelope
from deerflow.pipeline._io import DeadLetter, Output, PipelineContext, Sink, Source
from deerflow.pipeline._metrics import LatencyWindow, StageMetrics
from deerflow.pipeline._pipeline import Pipeline, PipelineSpec
from deerflow.pipeline._runner import Invoke, StageRunner, stage_invoker
from deerflow.pipeline._sinks import LoggedDeadLetters, as_sink
from deerflow.pipeline._sources import as_source
from deerflow.pipeline._stage import StageDef, StageOptions

log = logging.getLogger("deerflow.pipeline")
SINK = "sink"
DEAD_LETTER_ATTEMPTS = 3


class PipelineError(DeerflowError):
    """The pipeline itself could not go on (its source broke, dead letters cannot be written)."""


@dataclass(frozen=True)
class PipelineReport:
    """How a pipeline run went.

    ``status`` is ``completed`` (the source ran out and everything drained), ``cancelled``
    (stopped before the source ran out; admitted items drained unless the drain timed out) or
    ``failed`` (``error`` says why). ``items`` counts source items: ``offered`` =
    ``completed + failed + dropped + in_flight`` (plus, for a stop, offers refused).
    """

    name: str
    status: str
    error: str | None
    started_at: float
    finished_at: float | None
    items: dict[str, Any] = field(default_factory=dict)
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)

    def output(self) -> dict[str, Any]:
        """The report as a JSON-ready dict (a pipeline run's output)."""
        return {
            "pipeline": self.name,
            "items": self.items,
            "stages": self.stages,
            "source": self.source,
        }


class PipelineRuntime:
    """Runs a :class:`Pipeline` class (or instance) from a source to a sink.

    Args:
        pipeline: the class (instantiated once) or an instance.
        backpressure: the bound and strategy; default ``Backpressure()``.
        source: a :class:`Source` or an (async) iterable.
        sink: a :class:`Sink` or a callable taking each output; default: outputs are discarded.
        dead_letter: a :class:`Sink` or a callable taking each :class:`DeadLetter`; default: a
            warning in the log.
        key: a function of an item giving its key (for ``ordered`` stages).
        params: exposed to the stages as ``self.params``.
        name: shown in reports; default the class name.
        context: what the hosting process offers sources and sinks.
        drain_timeout: seconds :meth:`stop` waits for in-flight items before abandoning them.
        seed: seeds the ``sample`` strategy (tests).

    ``async with`` starts and (gracefully) stops it; :meth:`run` does both around :meth:`join`.
    """

    def __init__(
        self,
        pipeline: type[Pipeline] | Pipeline,
        *,
        backpressure: Backpressure | None = None,
        source: Any = None,
        sink: Any = None,
        dead_letter: Any = None,
        key: Callable[[Any], Any] | None = None,
        params: Mapping[str, Any] | None = None,
        name: str | None = None,
        context: PipelineContext | None = None,
        drain_timeout: float = 30.0,
        seed: int | None = None,
    ) -> None:
        cls = pipeline if isinstance(pipeline, type) else type(pipeline)
        self.spec = PipelineSpec(
            cls, backpressure or Backpressure(), source, sink, dead_letter, key
        )
        self.name = name or cls.__name__
        self.spec.validate(f"pipeline {self.name!r}")
        self._given = pipeline
        self._params = MappingProxyType(dict(params or {}))
        self.context = context or PipelineContext(name=self.name)
        self.drain_timeout = drain_timeout
        self._seed = seed
        self._task: asyncio.Task[None] | None = None
        self._failure: str | None = None
        self._abandoned: str | None = None
        self._exhausted = False
        self.started_at = 0.0
        self._clock = 0.0
        self.finished_at: float | None = None
        self._executors: list[ThreadPoolExecutor] = []

    @classmethod
    def from_spec(cls, spec: PipelineSpec, *, name: str, **overrides: Any) -> PipelineRuntime:
        """A runtime for a workflow's declared pipeline; keywords replace declared parts."""
        parts: dict[str, Any] = {
            "backpressure": spec.backpressure,
            "source": spec.source,
            "sink": spec.sink,
            "dead_letter": spec.dead_letter,
            "key": spec.key,
        }
        parts.update({k: v for k, v in overrides.items() if v is not None})
        return cls(spec.cls, name=name, **parts)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the source and sinks and start the stages; idempotent."""
        if self._task is not None:
            return
        if self.spec.source is None:
            raise DeerflowError(f"pipeline {self.name!r} has no source: give input= or source=")
        self._build()
        try:
            await self.source.open(self.context)
            for sink in self._sinks():
                await sink.open(self.context)
        except BaseException:
            await self._close()  # whatever did open is closed again
            raise
        self.started_at = time.time()
        self._clock = time.monotonic()
        self._task = asyncio.create_task(self._main(), name=f"deerflow-pipeline-{self.name}")

    async def join(self, timeout: float | None = None) -> PipelineReport:
        """Wait until the pipeline has ended (source exhausted and drained, or failed)."""
        if self._task is None:
            raise DeerflowError(f"pipeline {self.name!r} is not started")
        await asyncio.wait_for(asyncio.shield(self._task), timeout)
        return self.report()

    async def stop(self) -> PipelineReport | None:
        """Stop taking items, drain the ones in flight, close; idempotent, safe before start.

        Items still in flight after ``drain_timeout`` are abandoned (a durable source delivers
        them again: their offsets were never committed).
        """
        if self._task is None:
            return None
        self.intake.stop()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), self.drain_timeout)
        except TimeoutError:
            self._abandoned = (
                f"{self.intake.inflight} items still in flight after the {self.drain_timeout}s"
                " drain timeout were abandoned"
            )
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        return self.report()

    async def run(self) -> PipelineReport:
        """Start, wait until the source is exhausted and drained, and return the report."""
        async with self:
            return await self.join()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def done(self) -> bool:
        """Whether the pipeline has ended."""
        return self._task is not None and self._task.done()

    # -- wiring -------------------------------------------------------------------------------

    def _build(self) -> None:
        instance = self._given if isinstance(self._given, Pipeline) else self.spec.cls()
        instance.params = self._params
        self.source: Source = as_source(self.spec.source, where=f"pipeline {self.name!r}")
        self.sink: Sink | None = None if self.spec.sink is None else as_sink(self.spec.sink)
        self.dead_letter: Sink = (
            LoggedDeadLetters() if self.spec.dead_letter is None else as_sink(self.spec.dead_letter)
        )
        steps = [self._step(instance, st) for st in self.spec.stages]
        if self.sink is not None:
            steps.append(self._sink_step(self.sink))
        self.inputs: list[StageInput[Envelope]] = [
            StageInput(options.parallelism, keyed=options.ordered and options.parallelism > 1)
            for _, _, options in steps
        ]
        self.runners: list[StageRunner] = [
            StageRunner(
                name,
                invoke,
                options,
                batching=options.batch_size is not None,
                source=self.inputs[index],
                metrics=StageMetrics(name),
                forward=self._forward_to(index + 1),
                fail=self._fail,
            )
            for index, (name, invoke, options) in enumerate(steps)
        ]
        self.intake = Intake(
            self.spec.backpressure,
            self.inputs[0],
            discard=self._discard,
            reject=self._reject,
            key=self.spec.key,
            seed=self._seed,
        )
        self.completed = self.failed = self.dropped = 0
        self.latency = LatencyWindow()

    def _step(self, instance: Pipeline, st: StageDef) -> tuple[str, Invoke, StageOptions]:
        executor = None
        if not st.is_async:
            # A pool per stage: the loop's default pool (cores + 4 threads) would cap them all.
            executor = ThreadPoolExecutor(
                st.options.parallelism, thread_name_prefix=f"deerflow-{st.name}"
            )
            self._executors.append(executor)
        invoke = stage_invoker(
            getattr(instance, st.name),
            is_async=st.is_async,
            batch=st.options.batch_size is not None,
            executor=executor,
        )
        return st.name, invoke, st.options

    @staticmethod
    def _sink_step(sink: Sink) -> tuple[str, Invoke, StageOptions]:
        async def write(batch: list[Envelope]) -> None:
            await sink.write([Output(e.value, e.key) for e in batch])

        options = StageOptions(
            batch_size=sink.batch_size,
            batch_timeout=0.0,
            retries=sink.retries,
            retry_delay=sink.retry_delay,
        )
        return SINK, write, options

    def _forward_to(self, index: int) -> Callable[[Envelope], None]:
        if index == len(self.inputs):
            return self._complete
        target = self.inputs[index]
        return lambda envelope: target.put(envelope, envelope.key)

    def _sinks(self) -> list[Sink]:
        return [sink for sink in (self.sink, self.dead_letter) if sink is not None]

    # -- running ------------------------------------------------------------------------------

    async def _main(self) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._feed())
                for index in range(len(self.runners)):
                    group.create_task(self._stage(index))
        except* Exception as failures:
            error = _first_leaf(failures)
            self._failure = f"{type(error).__name__}: {error}"
            log.error("pipeline %s failed: %s", self.name, self._failure, exc_info=error)
        finally:
            self.finished_at = time.time()
            await self._close()

    async def _feed(self) -> None:
        try:
            await self.source.run(self.intake)
            self._exhausted = not self.intake.stopping.is_set()
        except Exception as error:  # a broken source ends the input; the rest still drains
            self._failure = f"source failed: {type(error).__name__}: {error}"
            log.error("pipeline %s: %s", self.name, self._failure, exc_info=error)
        finally:
            self.inputs[0].close()

    async def _stage(self, index: int) -> None:
        try:
            await self.runners[index].run()
        finally:
            if index + 1 < len(self.inputs):
                self.inputs[index + 1].close()

    async def _close(self) -> None:
        parts: list[Source | Sink] = [self.source, *self._sinks()]
        for part in parts:
            try:
                await part.close()
            except Exception as error:  # closing one part must not keep the others open
                log.warning("pipeline %s: closing %r failed: %r", self.name, part, error)
        for executor in self._executors:
            executor.shutdown(wait=False, cancel_futures=True)

    # -- the ends of an item ------------------------------------------------------------------

    def _complete(self, envelope: Envelope) -> None:
        now = time.monotonic()
        for token in envelope.tokens:
            self.latency.add(now - token.admitted_at)
            token.settle()
        self.completed += envelope.weight
        self.intake.release(envelope.weight)

    def _discard(self, envelope: Envelope) -> None:
        self.runners[0].metrics.dropped += envelope.weight
        self.dropped += envelope.weight
        for token in envelope.tokens:
            token.settle()

    async def _fail(
        self, stage: str, batch: list[Envelope], error: BaseException, attempts: int
    ) -> None:
        letters = [
            Output(
                DeadLetter.of(e.value, stage, error, attempts, key=e.key, origin=_origin(e)), e.key
            )
            for e in batch
        ]
        await self._write_dead_letters(letters)
        for envelope in batch:
            for token in envelope.tokens:
                token.settle()
            self.failed += envelope.weight
            self.intake.release(envelope.weight)

    async def _reject(self, envelope: Envelope, reason: str) -> None:
        letter = DeadLetter(
            item=envelope.value,
            stage="source",
            reason=reason,
            key=envelope.key,
            origin=_origin(envelope),
        )
        await self._write_dead_letters([Output(letter, envelope.key)])
        self.failed += envelope.weight
        for token in envelope.tokens:
            token.settle()

    async def _write_dead_letters(self, letters: list[Output]) -> None:
        for attempt in range(1, DEAD_LETTER_ATTEMPTS + 1):
            try:
                await self.dead_letter.write(letters)
                return
            except Exception as error:
                if attempt == DEAD_LETTER_ATTEMPTS:
                    # Going on would lose the items silently: stop the pipeline instead.
                    raise PipelineError(f"cannot write dead letters: {error!r}") from error
                await asyncio.sleep(0.1 * 2**attempt)

    # -- reporting ----------------------------------------------------------------------------

    def _elapsed(self) -> float:
        return time.monotonic() - self._clock if self.started_at else 0.0

    def metrics(self) -> dict[str, Any]:
        """Live per-stage metrics and item totals (the shape of a report's output)."""
        return self.report().output()

    def report(self) -> PipelineReport:
        """The run so far (or as it ended)."""
        if self._task is None:
            return PipelineReport(self.name, "pending", None, 0.0, None)
        elapsed = self._elapsed()
        stages = {
            runner.name: runner.metrics.snapshot(
                queue_depth=len(runner.input), peak_queue_depth=runner.input.peak, elapsed=elapsed
            )
            for runner in self.runners
        }
        bp = self.spec.backpressure
        items = {
            "offered": self.intake.offered,
            "admitted": self.intake.admitted,
            "completed": self.completed,
            "failed": self.failed,
            "dropped": self.dropped,
            "in_flight": self.intake.inflight,
            "peak_in_flight": self.intake.peak_inflight,
            "max_buffer_size": bp.max_buffer_size,
            "strategy": bp.strategy,
            "elapsed_s": round(elapsed, 3),
            "latency": self.latency.summary(),
        }
        return PipelineReport(
            self.name,
            self._status(),
            self._error_text(),
            self.started_at,
            self.finished_at,
            items,
            stages,
            self.source.describe(),
        )

    def _status(self) -> str:
        if self._task is None or not self._task.done():
            return "running"
        if self._failure is not None:
            return "failed"
        return "completed" if self._exhausted and self._abandoned is None else "cancelled"

    def _error_text(self) -> str | None:
        if self._failure is not None or self._abandoned is not None:
            return self._failure or self._abandoned
        if self._status() == "cancelled":
            return "stopped before the source ran out; items in flight were drained"
        return None


def _first_leaf(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup):  # task groups nest: report the cause
        error = error.exceptions[0]
    return error


def _origin(envelope: Envelope) -> Mapping[str, Any] | None:
    if envelope.weight == 1:
        return envelope.tokens[0].origin
    return {"merged_items": envelope.weight, "first": envelope.tokens[0].origin}
