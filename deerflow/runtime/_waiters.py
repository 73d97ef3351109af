"""Callers waiting for a run's end in the process that decides it (``Engine.wait``).

A waiter is a future answered with the run's :class:`RunResult` once its owner knows the
ending is durable, or failed with :class:`RunMoved` when the run's partition goes to another
member (or the owner stops): the caller then asks the run index. When to answer is the
owner's call; this holds the futures and answers or releases them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

from deerflow.core.state import RunState
from deerflow.runtime._results import RunResult

T = TypeVar("T")


class RunMoved(Exception):
    """The run a caller waited on here is no longer this orchestrator's to decide."""


class RunFutures(Generic[T]):
    """Futures by run id; each caller forgets its own as it leaves (bounded by the callers)."""

    def __init__(self) -> None:
        self._by_run: dict[str, list[asyncio.Future[T]]] = {}

    def __bool__(self) -> bool:
        return bool(self._by_run)

    def __contains__(self, run_id: object) -> bool:
        return run_id in self._by_run

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_run)

    def add(self, run_id: str) -> asyncio.Future[T]:
        """A new future for ``run_id``."""
        waiter: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._by_run.setdefault(run_id, []).append(waiter)
        return waiter

    def forget(self, run_id: str, waiter: asyncio.Future[T]) -> None:
        """Stop tracking ``waiter`` (answered, or its caller gave up)."""
        waiters = self._by_run.get(run_id)
        if waiters is not None and waiter in waiters:
            waiters.remove(waiter)
            if not waiters:
                del self._by_run[run_id]

    def of(self, run_id: str) -> list[asyncio.Future[T]]:
        """The futures of ``run_id`` (still tracked)."""
        return self._by_run.get(run_id, [])

    def pop(self, run_id: str) -> list[asyncio.Future[T]]:
        """The futures of ``run_id``, no longer tracked."""
        return self._by_run.pop(run_id, [])


class EndWaiters(RunFutures[RunResult]):
    """Futures for the results of runs, by run id.

    Args:
        result_of: the result of an ended run's state (built when answered: the state may be
            evicted or retried later).
    """

    def __init__(self, result_of: Callable[[RunState], RunResult]) -> None:
        super().__init__()
        self._result_of = result_of

    def answer(self, state: RunState) -> None:
        """Answer the waiters of ``state``'s run, which has ended durably."""
        waiters = self._by_run.pop(state.run_id, [])
        if waiters:
            result = self._result_of(state)
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(result)

    def release(self, run_ids: Iterable[str] | None = None) -> None:
        """Fail the waiters of ``run_ids`` (default: all) with :class:`RunMoved`."""
        for run_id in list(self._by_run) if run_ids is None else run_ids:
            for waiter in self._by_run.pop(run_id, ()):
                if not waiter.done():
                    waiter.set_exception(RunMoved(run_id))
