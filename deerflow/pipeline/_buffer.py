"""A stage's input: FIFO buffers its workers take items from, closable when upstream ends.

The buffers themselves are unbounded on purpose: the pipeline bounds the items in flight as a
whole at its entrance (see :mod:`deerflow.pipeline._backpressure`), so no buffer can hold more
than ``max_buffer_size`` items, and a stage never blocks handing its output on (which could
deadlock stages waiting on each other). Random eviction serves the ``sample`` strategy.
"""

from __future__ import annotations

import asyncio
import itertools
import zlib
from collections import deque
from enum import Enum
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Signal(Enum):
    """What :meth:`Buffer.get` returns instead of an item."""

    CLOSED = "closed"  # closed and empty: no item will ever come
    TIMEOUT = "timeout"  # the deadline passed with the buffer empty


class Buffer(Generic[T]):
    """An async FIFO shared by one or more workers; ``close()`` ends them once it is empty."""

    def __init__(self) -> None:
        self._items: deque[T] = deque()
        self._getters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T) -> None:
        """Append ``item`` and wake one waiting worker."""
        if self._closed:
            raise RuntimeError("put on a closed pipeline buffer")
        self._items.append(item)
        self._wake_one()

    def close(self) -> None:
        """No more items will come; waiting workers wake and drain what is left."""
        self._closed = True
        while self._getters:
            self._release(self._getters.popleft())

    def evict(self, index: int) -> T:
        """Remove and return the item at ``index`` (0 is the oldest)."""
        item = self._items[index]
        del self._items[index]
        return item

    async def get(self, deadline: float | None = None) -> T | Signal:
        """The oldest item; :attr:`Signal.CLOSED` or, past ``deadline`` (loop time), TIMEOUT."""
        loop = asyncio.get_running_loop()
        while True:
            if self._items:
                return self._items.popleft()
            if self._closed:
                return Signal.CLOSED
            if deadline is not None and loop.time() >= deadline:
                return Signal.TIMEOUT
            waiter = loop.create_future()
            self._getters.append(waiter)
            timer = None if deadline is None else loop.call_at(deadline, self._release, waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # we were woken for an item we will not take: pass it on
                raise
            finally:
                if timer is not None:
                    timer.cancel()
                if not waiter.done():
                    waiter.cancel()

    def _wake_one(self) -> None:
        while self._getters:
            waiter = self._getters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    @staticmethod
    def _release(waiter: asyncio.Future[None]) -> None:
        if not waiter.done():
            waiter.set_result(None)


async def collect(buffer: Buffer[T], size: int, linger: float) -> list[T]:
    """Up to ``size`` items: wait for the first, then at most ``linger`` s for the rest.

    Returns an empty list only when the buffer is closed and drained. ``linger=0`` takes what
    is there without waiting (a sink's micro-batch).
    """
    first = await buffer.get()
    if first is Signal.CLOSED:
        return []
    assert not isinstance(first, Signal)
    batch = [first]
    deadline = asyncio.get_running_loop().time() + linger
    while len(batch) < size:
        item = await buffer.get(deadline)
        if isinstance(item, Signal):
            break
        batch.append(item)
    return batch


class StageInput(Generic[T]):
    """The buffers in front of one stage: one shared, or one per worker when ordered by key.

    Keyed routing hashes the key (CRC-32 of its text, stable across processes) to a worker,
    so one key's items are always handled by one worker, in order. Items without a key are
    spread round-robin.
    """

    def __init__(self, workers: int, *, keyed: bool) -> None:
        self.buffers: list[Buffer[T]] = [Buffer() for _ in range(workers if keyed else 1)]
        self._next = itertools.count()
        self.peak = 0

    def __len__(self) -> int:
        return sum(len(buffer) for buffer in self.buffers)

    def route(self, key: Any) -> int:
        """The index of the buffer an item with ``key`` goes to."""
        count = len(self.buffers)
        if count == 1:
            return 0
        if key is None:
            return next(self._next) % count
        text = key if isinstance(key, bytes) else str(key).encode()
        return zlib.crc32(text) % count

    def put(self, item: T, key: Any = None) -> None:
        """Append ``item`` to its buffer."""
        self.buffers[self.route(key)].put(item)
        self.peak = max(self.peak, len(self))

    def evict(self, index: int) -> T:
        """Remove the ``index``-th waiting item, counting through the buffers in turn."""
        for buffer in self.buffers:
            if index < len(buffer):
                return buffer.evict(index)
            index -= len(buffer)
        raise IndexError("evict index out of range")

    def close(self) -> None:
        """Upstream has ended: the stage's workers finish once their buffers are empty."""
        for buffer in self.buffers:
            buffer.close()
