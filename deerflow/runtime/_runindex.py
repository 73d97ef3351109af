"""A read model of every run: follows all history partitions and folds them.

It answers ``get_run``, ``list_runs`` and ``RunHandle.result`` in any process (a CLI, the
dashboard, a client that only starts runs), independently of which orchestrator owns a run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from deerflow.core import _history as h
from deerflow.core._state import RunState, fold
from deerflow.core._topics import Topics
from deerflow.log.base import EventLog, LogReader, TopicPartition

log = logging.getLogger("deerflow.runindex")

Listener = Callable[[RunState, h.HistoryEvent], None]


class RunIndex:
    """Every run in the history, folded, with waiters for run completion."""

    def __init__(self, log_: EventLog, topics: Topics) -> None:
        self._log = log_
        self._topics = topics
        self.runs: dict[str, RunState] = {}
        self._reader: LogReader | None = None
        self._partitions: list[TopicPartition] = []
        self._task: asyncio.Task[None] | None = None
        self._polls = 0
        self._changed = asyncio.Condition()
        self._listeners: list[Listener] = []
        self._start_lock = asyncio.Lock()

    async def start(self) -> None:
        """Start following the history from its beginning; safe to call concurrently."""
        async with self._start_lock:
            if self._task is not None:
                return
            count = await self._log.partition_count(self._topics.history)
            self._partitions = [TopicPartition(self._topics.history, p) for p in range(count)]
            self._reader = self._log.reader({tp: 0 for tp in self._partitions})
            await self._reader.start()
            self._task = asyncio.create_task(self._follow(), name="deerflow-runindex")

    async def stop(self) -> None:
        """Stop following; idempotent."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._reader is not None:
            await self._reader.stop()
            self._reader = None

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(state, event)`` for every event that changes a run."""
        self._listeners.append(listener)

    async def _follow(self) -> None:
        assert self._reader is not None
        while True:
            try:
                records = await self._reader.poll(timeout=0.05, max_records=5000)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reading the history failed; retrying")
                await asyncio.sleep(1.0)
                continue
            for record in records:
                self._apply(record.value)
            async with self._changed:
                self._polls += 1
                self._changed.notify_all()

    def _apply(self, value: bytes) -> None:
        try:
            event = h.decode(value)
        except ValueError:
            return
        state = self.runs.get(event.run_id)
        if state is None:
            if not isinstance(event, h.RunRequested):
                return
            state = self.runs[event.run_id] = RunState(run_id=event.run_id)
        if fold(state, event):
            for listener in self._listeners:
                listener(state, event)

    def caught_up(self) -> bool:
        """Whether the last poll had read everything durable at that time."""
        assert self._reader is not None
        return all(self._reader.lag(tp) == 0 for tp in self._partitions)

    async def sync(self, timeout: float | None = 30.0) -> None:
        """Wait until everything appended before this call has been folded."""
        await self.start()
        async with self._changed:
            target = self._polls + 2  # a poll that began after this call, then one more
            await asyncio.wait_for(
                self._changed.wait_for(lambda: self._polls >= target and self.caught_up()),
                timeout,
            )

    async def wait(
        self, run_id: str, predicate: Callable[[RunState], bool], timeout: float | None
    ) -> RunState | None:
        """Wait until run ``run_id`` satisfies ``predicate``; ``None`` on timeout."""
        await self.start()

        def ready() -> bool:
            state = self.runs.get(run_id)
            return state is not None and predicate(state)

        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(ready), timeout)
            except TimeoutError:
                return None
        return self.runs[run_id]
