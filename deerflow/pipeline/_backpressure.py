"""``Backpressure``: how many items a pipeline holds, and what happens when it holds that many.

:class:`Intake` is the pipeline's entrance and enforces it. Every item a source offers needs a
*permit*; there are ``max_buffer_size`` of them and an item gives its permit back only when it
leaves the pipeline (completed by the last stage or sink, or dead-lettered). So the number of
items in flight anywhere in the pipeline (waiting in a buffer, in a stage, in a partial batch)
never exceeds ``max_buffer_size``, whatever the source does. When no permit is free:

* ``block`` — the source waits (a Kafka source pauses its partitions instead); nothing is lost.
* ``drop`` — the new item is dropped and counted.
* ``sample`` — the first stage's buffer is kept a uniform random sample of everything that
  arrived since it was last empty (reservoir sampling: the n-th such arrival replaces a random
  waiting item with probability k/n, k items waiting; an arrival finding a free permit is
  simply admitted), so what gets processed under overload is a representative fraction of
  the stream rather than only its oldest or newest part; each item let go is counted. Kept
  items stay in arrival order.

Items a source acknowledges (Kafka offsets, SQS messages) are acknowledged when dropped or
skipped too: letting them go was the strategy's decision, not a failure.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from deerflow.errors import DefinitionError
from deerflow.pipeline._buffer import StageInput
from deerflow.pipeline._envelope import Envelope, Token

Strategy = Literal["block", "drop", "sample"]
STRATEGIES: tuple[Strategy, ...] = ("block", "drop", "sample")


@dataclass(frozen=True)
class Backpressure:
    """The bound on a pipeline's items in flight and the strategy used when it is reached.

    Args:
        max_buffer_size: items in flight at most, across all buffers and stages. ``None``
            removes the bound (memory then grows with the backlog; for comparisons only).
        strategy: ``"block"``, ``"drop"`` or ``"sample"`` (see :mod:`deerflow.pipeline`).
    """

    max_buffer_size: int | None = 1000
    strategy: Strategy = "block"

    def __post_init__(self) -> None:
        size = self.max_buffer_size
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 1):
            raise DefinitionError(f"Backpressure: max_buffer_size must be >= 1, not {size!r}")
        if self.strategy not in STRATEGIES:
            raise DefinitionError(
                f"Backpressure: strategy must be one of {', '.join(STRATEGIES)},"
                f" not {self.strategy!r}"
            )


Discard = Callable[[Envelope], None]
Reject = Callable[[Envelope, str], Awaitable[None]]
KeyFn = Callable[[Any], Any]


class Intake:
    """The pipeline's entrance: sources :meth:`offer` items here (see the module docstring).

    Args:
        backpressure: the bound and strategy.
        entry: the first stage's input buffers.
        discard: told about each item dropped or skipped (counts and acknowledges it).
        reject: dead-letters input a source could not read (see :meth:`reject`).
        key: the pipeline's key function, applied to each offered value.
        seed: seeds the sampling (tests).
    """

    def __init__(
        self,
        backpressure: Backpressure,
        entry: StageInput[Envelope],
        *,
        discard: Discard,
        reject: Reject,
        key: KeyFn | None = None,
        seed: int | None = None,
    ) -> None:
        self.backpressure = backpressure
        self.entry = entry
        self._discard = discard
        self._reject = reject
        self._key = key
        self._rng = random.Random(seed)  # sampling, not cryptography
        self.stopping = asyncio.Event()
        self.inflight = 0
        self.peak_inflight = 0
        self.offered = 0
        self.admitted = 0
        self._arrivals = 0
        self._freed: asyncio.Event = asyncio.Event()

    # -- what sources look at -------------------------------------------------------------

    @property
    def strategy(self) -> Strategy:
        """The backpressure strategy."""
        return self.backpressure.strategy

    def free(self) -> int | None:
        """Permits free now (``None``: unbounded)."""
        size = self.backpressure.max_buffer_size
        return None if size is None else max(0, size - self.inflight)

    def full(self) -> bool:
        """Whether an item offered now would meet the strategy rather than a free permit."""
        return self.free() == 0

    async def wait_free(self, timeout: float | None = None) -> bool:
        """Wait until a permit is free (or stopping, or ``timeout``); whether one is."""
        while self.full() and not self.stopping.is_set():
            self._freed.clear()
            try:
                async with asyncio.timeout(timeout):
                    await self._freed.wait()
            except TimeoutError:
                break
        return not self.full()

    # -- offering -----------------------------------------------------------------------------

    async def offer(
        self,
        value: Any,
        *,
        key: Any = None,
        origin: Mapping[str, Any] | None = None,
        ack: Callable[[], None] | None = None,
    ) -> bool:
        """Offer one item; whether it entered the pipeline.

        ``origin`` describes where it came from (shown in dead letters); ``ack`` is called once
        when the item is done with (completed, dead-lettered, dropped or skipped). Under
        ``block`` this waits for a permit; if the pipeline stops meanwhile the item is not
        taken and ``ack`` is not called (a durable source delivers it again).
        """
        if self.stopping.is_set():
            return False
        self.offered += 1
        envelope = Envelope(value, key, [Token(origin, ack, time.monotonic())])
        if self._key is not None:
            try:
                envelope.key = self._key(value)
            except Exception as error:  # the user's key function: one bad item, not the pipeline
                await self._reject(envelope, f"key function raised {type(error).__name__}: {error}")
                return False
        if not self.full():
            self._admit(envelope)
            return True
        if self.strategy == "block":
            if not await self.wait_free() or self.stopping.is_set():
                return False
            self._admit(envelope)
            return True
        if self.strategy == "drop":
            self._discard(envelope)
            return False
        return self._sample(envelope)

    async def reject(
        self,
        value: Any,
        reason: str,
        *,
        key: Any = None,
        origin: Mapping[str, Any] | None = None,
        ack: Callable[[], None] | None = None,
    ) -> None:
        """Dead-letter input the source could not turn into an item (undecodable, say).

        It never enters the pipeline and takes no permit; ``ack`` is called once the dead
        letter is written.
        """
        self.offered += 1
        await self._reject(Envelope(value, key, [Token(origin, ack, time.monotonic())]), reason)

    def _admit(self, envelope: Envelope) -> None:
        self._count_arrival()
        self.inflight += 1
        self.admitted += 1
        self.peak_inflight = max(self.peak_inflight, self.inflight)
        self.entry.put(envelope, envelope.key)

    def _count_arrival(self) -> None:
        # The waiting items stand for every arrival since the entry buffer was last empty;
        # counting from there (not from the last free permit) keeps the sample uniform.
        if not len(self.entry):
            self._arrivals = 0
        self._arrivals += 1

    def _sample(self, envelope: Envelope) -> bool:
        self._count_arrival()
        waiting = len(self.entry)
        if not (waiting and self._rng.random() * self._arrivals < waiting):
            self._discard(envelope)
            return False
        victim = self.entry.evict(self._rng.randrange(waiting))
        self._discard(victim)
        # The victim's permit passes to the newcomer: in-flight stays the same.
        self.admitted += 1
        self.entry.put(envelope, envelope.key)
        return True

    def release(self, count: int) -> None:
        """``count`` admitted items left the pipeline: their permits are free again."""
        self.inflight -= count
        self._freed.set()

    def stop(self) -> None:
        """Take no more items: blocked offers return ``False``, sources end their loops."""
        self.stopping.set()
        self._freed.set()
