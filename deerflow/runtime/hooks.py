"""Hooks: where cross-cutting concerns (tracing, metrics, logging) attach to the runtime.

Interceptors in the manner of Temporal's and middleware in the manner of Dramatiq's: a
:class:`Hooks` subclass overrides the methods it needs; each method takes one dataclass, so a
field added later breaks no hook. A :class:`~deerflow.runtime.Plugin` contributes hooks to the
engines that adopt it; the runtime calls them and imports none of their modules.

``on_history_event`` sees every history event that changes a run as this process's run index
folds it (every run of the deployment, not only those this process owns): metrics count runs
there. ``on_schedule_ticks`` hears of the ticks of a schedule this process fired, let go
after downtime (``catchup``) or backfilled. ``around_task`` wraps a task attempt: it must
await ``attempt.proceed()`` exactly once and return its result, so whatever it sets up (a
span made current, a log context) is in force while the body runs. Hooks of several plugins
nest in adoption order, the first outermost.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from deerflow.core import RunState
from deerflow.core import history as h
from deerflow.runtime._context import TaskDispatch

log = logging.getLogger("deerflow.hooks")


@dataclass(frozen=True, slots=True)
class WorkerStarting:
    """A worker is starting.

    Attributes:
        worker: its name (``host:pid``), as outcomes record it.
    """

    worker: str


@dataclass(frozen=True, slots=True)
class TaskAttempt:
    """One attempt of a task about to run.

    Attributes:
        dispatch: the task message (run, task, attempt, trigger, ...).
        proceed: runs the body (and the hooks inside this one); await it once.
    """

    dispatch: TaskDispatch
    proceed: Callable[[], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class TaskEnded:
    """An attempt has ended; its outcome is about to be appended to the run's history.

    Attributes:
        dispatch: the task message.
        outcome: ``TaskCompleted`` or ``TaskFailed``, as it will be recorded.
    """

    dispatch: TaskDispatch
    outcome: h.TaskCompleted | h.TaskFailed


@dataclass(frozen=True, slots=True)
class HistoryFolded:
    """A history event changed a run, as the run index of this process folded it.

    Attributes:
        state: the run after the event (the index's own: read it, do not keep or change it).
        event: the event.
    """

    state: RunState
    event: h.HistoryEvent


@dataclass(frozen=True, slots=True)
class ScheduleTicks:
    """Ticks of one schedule this process handled just now.

    Attributes:
        schedule: the schedule's name.
        workflow: the workflow it starts.
        fired: ticks whose runs were requested on time (or caught up after downtime).
        missed: ticks due while no process served the schedule that ``catchup`` let go.
        backfilled: runs a backfill started.
    """

    schedule: str
    workflow: str
    fired: int = 0
    missed: int = 0
    backfilled: int = 0


class Hooks:
    """Base class of hooks: every method does nothing; override the ones you need."""

    def on_worker_start(self, event: WorkerStarting) -> None:
        """Called when a worker starts, before it runs anything."""

    async def around_task(self, attempt: TaskAttempt) -> Any:
        """Wrap one attempt: ``return await attempt.proceed()`` inside your setup."""
        return await attempt.proceed()

    def on_task_end(self, event: TaskEnded) -> None:
        """Called with each attempt's outcome (also when it failed or timed out)."""

    def on_history_event(self, folded: HistoryFolded) -> None:
        """Called for each history event that changed a run, once the run index folded it."""

    def on_schedule_ticks(self, ticks: ScheduleTicks) -> None:
        """Called when this process fired, let go or backfilled ticks of a schedule."""


class HookChain(Hooks):
    """Several hooks called as one, in order (``around_task``: the first outermost).

    Only the hooks that override a method are called for it: a chain of hooks that do not wrap
    attempts costs an attempt nothing.
    """

    def __init__(self, hooks: Sequence[Hooks] = ()) -> None:
        self.hooks: tuple[Hooks, ...] = tuple(hooks)
        self._starts = _overriding(self.hooks, "on_worker_start")
        self._arounds = _overriding(self.hooks, "around_task")
        self._ends = _overriding(self.hooks, "on_task_end")
        self._folded = _overriding(self.hooks, "on_history_event")
        self._ticks = _overriding(self.hooks, "on_schedule_ticks")
        #: whether a hook wraps attempts / sees their ends (else a worker skips building the
        #: hook's argument for each attempt)
        self.wraps_tasks = bool(self._arounds)
        #: what wraps an attempt: the one hook that does itself (the usual case: tracing),
        #: so an attempt awaits no chain between it and that hook
        self.wrap: Callable[[TaskAttempt], Awaitable[Any]] = (
            self._arounds[0].around_task if len(self._arounds) == 1 else self.around_task
        )
        self.sees_task_ends = bool(self._ends)

    def __bool__(self) -> bool:
        return bool(self.hooks)

    def on_worker_start(self, event: WorkerStarting) -> None:
        """Each hook's ``on_worker_start``."""
        for hook in self._starts:
            hook.on_worker_start(event)

    async def around_task(self, attempt: TaskAttempt) -> Any:
        """Each hook's ``around_task``, nested."""
        arounds = self._arounds
        if len(arounds) == 1:  # the usual case (tracing): no nesting to build
            return await arounds[0].around_task(attempt)
        proceed = attempt.proceed
        for hook in reversed(arounds):
            proceed = _wrapped(hook, attempt.dispatch, proceed)
        return await proceed()

    def on_task_end(self, event: TaskEnded) -> None:
        """Each hook's ``on_task_end``."""
        for hook in self._ends:
            hook.on_task_end(event)

    @property
    def follows_history(self) -> bool:
        """Whether a hook overrides ``on_history_event`` (else nobody builds its events)."""
        return bool(self._folded)

    def on_history_event(self, folded: HistoryFolded) -> None:
        """Each hook's ``on_history_event``; one that raises is logged and the others run (the
        run index calls these as it folds: a broken hook must not stop it)."""
        for hook in self._folded:
            try:
                hook.on_history_event(folded)
            except Exception:
                log.exception("hook %r failed on %s", hook, folded.event.type)

    def on_schedule_ticks(self, ticks: ScheduleTicks) -> None:
        """Each hook's ``on_schedule_ticks``; one that raises is logged and the others run (a
        broken hook must not stop a schedule from firing)."""
        for hook in self._ticks:
            try:
                hook.on_schedule_ticks(ticks)
            except Exception:
                log.exception("hook %r failed on the ticks of %s", hook, ticks.schedule)


def _overriding(hooks: Sequence[Hooks], method: str) -> tuple[Hooks, ...]:
    default = getattr(Hooks, method)
    return tuple(h for h in hooks if getattr(type(h), method) is not default)


def _wrapped(
    hook: Hooks, dispatch: TaskDispatch, inner: Callable[[], Awaitable[Any]]
) -> Callable[[], Awaitable[Any]]:
    def proceed() -> Awaitable[Any]:
        return hook.around_task(TaskAttempt(dispatch, inner))

    return proceed
