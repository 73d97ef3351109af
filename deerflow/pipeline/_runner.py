"""One stage at run time: its workers take items (or batches) from its input, call the stage with
retries, and hand each output on, or hand the items that failed for good to the dead letters.

Retries happen inside the worker, which holds its place meanwhile: that keeps the per-key order
of an ordered stage (a later item of the key cannot overtake one being retried), at the cost of
that worker's other keys waiting too.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import Any

from deerflow.errors import DeerflowError
from deerflow.pipeline._buffer import Buffer, StageInput, collect
from deerflow.pipeline._envelope import Envelope
from deerflow.pipeline._metrics import StageMetrics
from deerflow.pipeline._stage import StageOptions

Invoke = Callable[[list[Envelope]], Awaitable[Any]]
Forward = Callable[[Envelope], None]
Fail = Callable[[str, list[Envelope], BaseException, int], Awaitable[None]]


def stage_invoker(
    fn: Callable[[Any], Any], *, is_async: bool, batch: bool, executor: Executor | None
) -> Invoke:
    """How a stage function is called on a batch of envelopes (one envelope unless batching).

    Sync functions run on ``executor`` (a pool of the stage's own, ``parallelism`` threads).
    """

    async def invoke(envelopes: list[Envelope]) -> Any:
        arg = [e.value for e in envelopes] if batch else envelopes[0].value
        if is_async:
            return await fn(arg)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(executor, functools.partial(fn, arg))

    return invoke


def outputs_of(batch: list[Envelope], result: Any, *, batching: bool) -> list[Envelope]:
    """The envelopes a call produced: one per input, or one carrying the whole batch."""
    if not batching:
        envelope = batch[0]
        envelope.value = result
        return [envelope]
    if isinstance(result, list) and len(result) == len(batch):
        for envelope, value in zip(batch, result, strict=True):
            envelope.value = value
        return batch
    tokens = [token for envelope in batch for token in envelope.tokens]
    return [Envelope(result, batch[0].key, tokens)]


def _retriable(error: BaseException) -> bool:
    return not (isinstance(error, DeerflowError) and not error.retriable)


class StageRunner:
    """Runs one stage until its input is closed and drained.

    Args:
        name: the stage's name.
        invoke: calls the stage on a batch (see :func:`stage_invoker`).
        options: parallelism, batching and retries.
        batching: whether the stage takes batches.
        source: the stage's input buffers.
        metrics: where its counters go.
        forward: hands one output on (to the next stage's input, or completes it).
        fail: dead-letters a batch that failed for good (stage name, batch, error, attempts).
    """

    def __init__(
        self,
        name: str,
        invoke: Invoke,
        options: StageOptions,
        *,
        batching: bool,
        source: StageInput[Envelope],
        metrics: StageMetrics,
        forward: Forward,
        fail: Fail,
    ) -> None:
        self.name = name
        self._invoke = invoke
        self.options = options
        self._batching = batching
        self.input = source
        self.metrics = metrics
        self._forward = forward
        self._fail = fail

    async def run(self) -> None:
        """Run ``parallelism`` workers until the input is closed and empty."""
        buffers = self.input.buffers
        per_buffer = 1 if len(buffers) > 1 else self.options.parallelism
        async with asyncio.TaskGroup() as group:
            for index, buffer in enumerate(buffers):
                for _ in range(per_buffer):
                    group.create_task(self._work(buffer), name=f"stage-{self.name}-{index}")

    async def _work(self, buffer: Buffer[Envelope]) -> None:
        size = (self.options.batch_size or 1) if self._batching else 1
        while batch := await collect(buffer, size, self.options.batch_timeout):
            await self._process(batch)

    async def _process(self, batch: list[Envelope]) -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                result = await self._call(batch)
            except Exception as error:  # any failure of user code is the item's, not ours
                self.metrics.errors += 1
                self.metrics.last_error = f"{type(error).__name__}: {error}"
                if attempt >= self.options.max_attempts or not _retriable(error):
                    self.metrics.failed += sum(e.weight for e in batch)
                    await self._fail(self.name, batch, error, attempt)
                    return
                self.metrics.retries += 1
                delay = getattr(error, "next_retry_delay", None)
                await asyncio.sleep(
                    delay if delay is not None else self.options.delay_before(attempt + 1)
                )
                continue
            break
        self.metrics.processed += sum(e.weight for e in batch)
        for envelope in outputs_of(batch, result, batching=self._batching):
            self._forward(envelope)

    async def _call(self, batch: list[Envelope]) -> Any:
        metrics = self.metrics
        metrics.calls += 1
        metrics.busy += 1
        started = time.perf_counter()
        try:
            return await self._invoke(batch)
        finally:
            metrics.busy -= 1
            metrics.latency.add(time.perf_counter() - started)
