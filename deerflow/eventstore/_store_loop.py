"""The event loop an event store's I/O lives on, and how callers anywhere reach it.

Clients of an event log (aiokafka's above all) belong to the loop they were started on. An
:class:`~deerflow.eventstore.EventStore` therefore has one *home loop*: the loop it was started
on with ``await store.start()`` (or ``async with``), else, when it is first used from
synchronous code (a task body in a worker thread, a script), a private loop on a daemon thread
it owns. Every operation runs there; async callers on other loops and sync callers in other
threads hand their work over and wait for the answer.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from deerflow.errors import EventStoreError

T = TypeVar("T")
Starter = Callable[[], Coroutine[Any, Any, None]]
CLOSE_TIMEOUT = 10.0


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The loop running in this thread, if any."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class HomeLoop:
    """Owns the choice of loop, the private thread if any, and the start of the store.

    Args:
        name: names the private thread.
        may_spawn: whether a private loop thread may be started (not for a log the store
            does not own: that log lives on its owner's loop).
        start: connects the store; run once on the home loop before any operation (again
            after a failed attempt, so a broker that was down at first is retried).
    """

    def __init__(self, name: str, start: Starter, *, may_spawn: bool = True) -> None:
        self._name = name
        self._start = start
        self._may_spawn = may_spawn
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready: concurrent.futures.Future[None] | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The home loop, once chosen."""
        return self._loop

    def _ensure(self, adopt: asyncio.AbstractEventLoop | None) -> concurrent.futures.Future[None]:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                self._loop = adopt or self._spawn()
                self._ready = None
            if self._ready is None or _failed(self._ready):
                self._ready = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
            return self._ready

    def _spawn(self) -> asyncio.AbstractEventLoop:
        if not self._may_spawn:
            # The log belongs to someone else (an engine) and lives on their loop.
            raise EventStoreError(
                f"{self._name} uses an event log it does not own: first use it from async code "
                "on that log's event loop (await store.start() there)",
                retriable=False,
            )
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name=self._name, daemon=True)
        thread.start()
        self._thread = thread
        _private.add(self)
        return loop

    async def call(self, make: Callable[[], Awaitable[T]]) -> T:
        """Run ``make()`` on the home loop (adopting this loop if none is chosen yet)."""
        here = asyncio.get_running_loop()
        await asyncio.wrap_future(self._ensure(here))
        home = self._loop
        assert home is not None
        if home is here:
            return await make()

        async def run() -> T:
            return await make()

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(run(), home))

    def call_blocking(self, make: Callable[[], Awaitable[T]], *, what: str) -> T:
        """Run ``make()`` on the home loop and wait for it, from synchronous code."""
        if running_loop() is not None:
            raise RuntimeError(
                f"{what} blocks; inside async code use its async form "
                f"(await store.{what.split('(')[0]}_async(...))"
            )
        self._ensure(None).result()
        home = self._loop
        assert home is not None

        async def run() -> T:
            return await make()

        return asyncio.run_coroutine_threadsafe(run(), home).result()

    def close(self, stop: Starter) -> None:
        """Run ``stop()`` on the home loop if the store was started, then end the thread."""
        with self._lock:
            loop, ready, thread = self._loop, self._ready, self._thread
            if loop is not None and loop is running_loop():
                raise RuntimeError("close() blocks; inside async code use await store.aclose()")
            self._loop = self._ready = self._thread = None
        _private.discard(self)
        if loop is None or loop.is_closed():
            return
        try:
            if ready is not None and not _failed(ready):
                asyncio.run_coroutine_threadsafe(_after(ready, stop), loop).result(CLOSE_TIMEOUT)
        finally:
            if thread is not None:
                loop.call_soon_threadsafe(loop.stop)
                thread.join(CLOSE_TIMEOUT)
                loop.close()

    async def aclose(self, stop: Starter) -> None:
        """:meth:`close` from async code (on the home loop or any other)."""
        if self._loop is asyncio.get_running_loop() and self._thread is None:
            with self._lock:
                ready, self._loop, self._ready = self._ready, None, None
            if ready is not None and not _failed(ready):
                await _after(ready, stop)
            return
        await asyncio.to_thread(self.close, stop)


def _failed(ready: concurrent.futures.Future[None]) -> bool:
    return ready.done() and ready.exception() is not None


async def _after(ready: concurrent.futures.Future[None], stop: Starter) -> None:
    await asyncio.wrap_future(ready)  # a start still in progress finishes before the stop
    await stop()


# Private threads still running at exit get their store closed (producers flushed, files shut).
_private: weakref.WeakSet[HomeLoop] = weakref.WeakSet()
_closers: weakref.WeakKeyDictionary[HomeLoop, Starter] = weakref.WeakKeyDictionary()


def close_at_exit(home: HomeLoop, stop: Starter) -> None:
    """Have ``home`` closed with ``stop`` when the interpreter exits."""
    _closers[home] = stop


@atexit.register
def _close_all() -> None:
    for home in list(_private):
        stop = _closers.get(home)
        if stop is not None:
            with contextlib.suppress(Exception):  # exiting anyway: nothing left to tell
                home.close(stop)
