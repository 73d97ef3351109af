"""What the parts of :class:`~deerflow.runtime.Engine` share: its attributes, and the
methods one part calls on another.

The engine is put together from one class per concern (its lifecycle, its queries of runs,
its operations on runs, in their own modules) over this base, so that each reads alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from deerflow.core import history as h
from deerflow.core.topics import Topics
from deerflow.log.base import EventLog
from deerflow.runtime._archiver import Archiver
from deerflow.runtime._orchestrator import Orchestrator
from deerflow.runtime._registry import WorkflowRegistry
from deerflow.runtime._results import RunResult, run_result
from deerflow.runtime._runindex import RunIndex
from deerflow.runtime._worker import Worker
from deerflow.runtime.hooks import HookChain
from deerflow.runtime.plugins import Plugin, Service

__all__ = ["EngineParts"]


class EngineParts:
    """The engine's state, set by ``Engine.__init__``, and the calls between its parts."""

    options: dict[str, Any]
    services: list[Service]
    plugins: list[Plugin]
    hooks: HookChain
    log: EventLog
    registry: WorkflowRegistry
    topics: Topics
    index: RunIndex
    orchestrator: Orchestrator | None
    worker: Worker | None
    archiver: Archiver | None
    _run_services: bool
    _partitions: int
    _started: bool
    _holds_collector: bool
    _lock: asyncio.Lock
    _late: set[asyncio.Task[None]]
    _unstarted: list[Plugin]

    async def _start_engine(self, extra: Iterable[Service] = ()) -> None:
        raise NotImplementedError

    def _take_pending(self) -> list[Service]:
        raise NotImplementedError

    async def append_history(self, events: Iterable[h.HistoryEvent]) -> None:
        """Append events to their runs' histories (durable when this returns)."""
        raise NotImplementedError

    async def get_run(self, run_id: str) -> RunResult:
        """The run as its history tells it now; :class:`RunNotFound` if unknown."""
        raise NotImplementedError

    def _result(self, state: Any) -> RunResult:
        return run_result(state, self.registry.get(state.workflow, state.version))
