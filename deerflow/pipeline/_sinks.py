"""Sinks: a callable, any event-log topic, and the default dead-letter sink (the log)."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import deerflow._codec as _codec
from deerflow.errors import DefinitionError
from deerflow.log import EventLog, Message, open_log
from deerflow.pipeline._io import DeadLetter, Output, PipelineContext, Sink

log = logging.getLogger("deerflow.pipeline")


class CallableSink(Sink):
    """Calls ``fn(value)`` for each output (``batch=True``: ``fn(values)`` per micro-batch).

    A sync ``fn`` runs in one thread of its own, so calls never overlap and keep the order in
    which outputs reach the sink; an async ``fn`` is awaited on the loop.
    """

    def __init__(
        self, fn: Callable[[Any], Any], *, batch: bool = False, batch_size: int = 500
    ) -> None:
        if not callable(fn):
            raise DefinitionError(f"a sink is a callable or a Sink, not {fn!r}")
        self.fn = fn
        self.batch = batch
        self.batch_size = batch_size
        self._async = inspect.iscoroutinefunction(fn)
        self._thread: ThreadPoolExecutor | None = None

    async def open(self, context: PipelineContext) -> None:
        """Start the sink's thread (sync callables)."""
        if not self._async and self._thread is None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="deerflow-sink")

    async def write(self, outputs: Sequence[Output]) -> None:
        """Call the function for the outputs."""
        values = [output.value for output in outputs]
        if self._async:
            for call in [values] if self.batch else values:
                await self.fn(call)
            return
        assert self._thread is not None, "CallableSink.write before open"
        await asyncio.get_running_loop().run_in_executor(self._thread, self._call_all, values)

    def _call_all(self, values: list[Any]) -> None:
        if self.batch:
            self.fn(values)
        else:
            for value in values:
                self.fn(value)

    async def close(self) -> None:
        """Stop the thread."""
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.shutdown(wait=True)


def encode_value(value: Any) -> bytes:
    """Bytes as they are, text as UTF-8, dead letters and everything else as JSON."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, DeadLetter):
        return _codec.dumps(value.to_dict())
    return _codec.dumps(value)


def _key_text(key: Any) -> str | None:
    if key is None:
        return None
    return key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)


class LogSink(Sink):
    """Appends each output to ``topic`` of an event log (keyed by the output's key).

    Args:
        topic: the topic.
        log: an :class:`EventLog`, or its URL (opened and closed by the sink); ``None`` uses the
            log of the process serving the pipeline.
        key: a function of the value giving the record key (default: the item's key).
        encode: a function of the value giving the record's bytes (default: JSON).
    """

    def __init__(
        self,
        topic: str,
        log: EventLog | str | None = None,
        *,
        key: Callable[[Any], Any] | None = None,
        encode: Callable[[Any], bytes] = encode_value,
    ) -> None:
        self.topic = topic
        self._given = log
        self._key = key
        self._encode = encode
        self.log: EventLog | None = None
        self._owned = False
        self.written = 0

    async def open(self, context: PipelineContext) -> None:
        """Resolve and start the log (if the sink owns it) and make sure the topic exists."""
        self.log, self._owned = self.resolve(context)
        if self._owned:
            await self.log.start()
        await self.log.partition_count(self.topic)

    def resolve(self, context: PipelineContext) -> tuple[EventLog, bool]:
        """The log to write to and whether this sink starts and stops it."""
        if isinstance(self._given, EventLog):
            return self._given, False
        if isinstance(self._given, str):
            return open_log(self._given), True
        if context.log is None:
            raise DefinitionError(f"LogSink({self.topic!r}) needs a log outside `deerflow serve`")
        return context.log, False

    async def write(self, outputs: Sequence[Output]) -> None:
        """Append the outputs in one batch (durable when this returns)."""
        assert self.log is not None, "LogSink.write before open"
        await self.log.append(
            [
                Message(
                    topic=self.topic,
                    value=self._encode(output.value),
                    key=_key_text(self._key(output.value) if self._key else output.key),
                )
                for output in outputs
            ]
        )
        self.written += len(outputs)

    async def close(self) -> None:
        """Stop the log if the sink started it."""
        if self._owned and self.log is not None:
            await self.log.stop()
        self.log = None


class LoggedDeadLetters(Sink):
    """The dead-letter sink when none is given: a warning per item in the process log."""

    async def write(self, outputs: Sequence[Output]) -> None:
        """Log each dead letter."""
        for output in outputs:
            letter = output.value
            log.warning(
                "pipeline: dead-lettered an item at stage %s after %d attempts: %s",
                letter.stage,
                letter.attempts,
                letter.reason,
            )


def as_sink(value: Any) -> Sink:
    """A :class:`Sink` for ``value``: itself, or a :class:`CallableSink` around a callable."""
    return value if isinstance(value, Sink) else CallableSink(value)
