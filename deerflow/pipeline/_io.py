"""The plug points of a pipeline: :class:`Source` feeds it, :class:`Sink` takes its output.

Both follow deerflow's lifecycle idiom, split in two so a graceful stop can drain between
them: a source is ``open``-ed, ``run`` until exhausted or told to stop, and ``close``-d only
after every item it admitted has left the pipeline (so a Kafka source commits offsets of
finished items last). A sink is ``open``-ed before the first item and ``close``-d after the
last. Dead letters go to a sink too.
"""

from __future__ import annotations

import abc
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import deerflow._codec as _codec

if TYPE_CHECKING:
    from deerflow.log.base import EventLog
    from deerflow.pipeline._backpressure import Intake


@dataclass(frozen=True)
class PipelineContext:
    """What a pipeline's sources and sinks may use from the process hosting it.

    Attributes:
        name: the pipeline's name (its workflow's), e.g. for a default consumer group.
        log: the engine's event log when served by ``deerflow serve`` (Kafka sources and sinks
            without ``bootstrap_servers`` use it if it is a Kafka log).
    """

    name: str = "pipeline"
    log: EventLog | None = None


class Output(NamedTuple):
    """One output of the last stage: its value and the key it carries (the source's key)."""

    value: Any
    key: Any


@dataclass(frozen=True)
class DeadLetter:
    """An item the pipeline gave up on, and why.

    Attributes:
        item: the value as the failing stage received it (the batch's items for a batch).
        stage: the stage that failed (``"source"`` for input that could not be decoded).
        reason: the error text.
        error_type: the exception's class name.
        attempts: attempts made.
        key: the item's key.
        origin: where the source read it (topic/partition/offset, bucket/key/line...).
        traceback: the formatted traceback of the last attempt, if any.
        failed_at: UNIX time.
    """

    item: Any
    stage: str
    reason: str
    error_type: str | None = None
    attempts: int = 0
    key: Any = None
    origin: Mapping[str, Any] | None = None
    traceback: str | None = None
    failed_at: float = field(default_factory=time.time)

    @classmethod
    def of(
        cls,
        item: Any,
        stage: str,
        error: BaseException,
        attempts: int,
        *,
        key: Any = None,
        origin: Mapping[str, Any] | None = None,
    ) -> DeadLetter:
        """The dead letter for ``item`` that failed with ``error``."""
        return cls(
            item=item,
            stage=stage,
            reason=str(error) or type(error).__name__,
            error_type=type(error).__name__,
            attempts=attempts,
            key=key,
            origin=origin,
            traceback="".join(traceback.format_exception(error)),
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; an item JSON cannot encode is given as its ``repr``."""
        try:
            item = _codec.to_json_value(self.item)
        except TypeError:
            item = repr(self.item)
        try:
            key = _codec.to_json_value(self.key)
        except TypeError:
            key = repr(self.key)
        return {
            "item": item,
            "stage": self.stage,
            "reason": self.reason,
            "error_type": self.error_type,
            "attempts": self.attempts,
            "key": key,
            "origin": dict(self.origin) if self.origin else None,
            "traceback": self.traceback,
            "failed_at": self.failed_at,
        }


class Source(abc.ABC):
    """Where a pipeline's items come from.

    Subclasses implement :meth:`run`, offering items to the :class:`Intake` (which applies the
    backpressure) until exhausted or until ``intake.stopping`` is set.
    """

    #: Whether the source runs until stopped (a topic, a queue) rather than running out.
    unbounded: bool = False

    async def open(self, context: PipelineContext) -> None:  # noqa: B027 - optional hook
        """Connect; called once before :meth:`run`."""

    @abc.abstractmethod
    async def run(self, intake: Intake) -> None:
        """Offer items until there are no more or ``intake.stopping`` is set."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Called once every admitted item has left the pipeline (commit, disconnect)."""

    def describe(self) -> dict[str, Any]:
        """Counters of the source for the pipeline's report (empty by default)."""
        return {}


class Sink(abc.ABC):
    """Where a pipeline's outputs go: called with micro-batches of up to ``batch_size``.

    A sink runs as the pipeline's last step, with the retry and dead-letter handling of a stage
    (``retries`` attempts, then each output of the failed batch is dead-lettered).
    """

    batch_size: int = 500
    retries: int = 3
    retry_delay: float = 0.2

    async def open(self, context: PipelineContext) -> None:  # noqa: B027 - optional hook
        """Connect; called once before the first write."""

    @abc.abstractmethod
    async def write(self, outputs: Sequence[Output]) -> None:
        """Deliver ``outputs`` durably (or raise)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Flush and disconnect; called once after the last write."""
