"""The waiting node kinds: a durable sleep and a wait for a signal.

Neither goes to a worker. Scheduling an attempt records what it waits for
(:class:`~deerflow.waiting._fold.WaitStarted`) and starts a durable timer for its deadline;
the run's owner decides the end of the wait when the timer fires or a signal is there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from deerflow.core import KindOptions, NodeKind, RunState, TaskDef, TaskState
from deerflow.core import history as h
from deerflow.core.state import SCHEDULED
from deerflow.waiting._fold import WAIT_FOLD, WAITING, WaitEnded, WaitStarted


@dataclass(frozen=True)
class Upstream:
    """What ``until`` sees of an upstream task: its output."""

    output: Any


@dataclass(frozen=True)
class WaitContext:
    """What ``until=`` is called with: the run's id, params, input and upstream outputs."""

    run_id: str
    params: Mapping[str, Any]
    input: Any
    tasks: Mapping[str, Upstream] = field(default_factory=dict)


def wait_context(state: RunState, task: TaskDef) -> WaitContext:
    """The context ``until`` sees for ``task`` in ``state`` (its upstream tasks' outputs)."""
    ups = {d: Upstream(state.tasks[d].output) for d in task.depends_on if d in state.tasks}
    return WaitContext(state.run_id, dict(state.params), state.input, ups)


class WaitKind(NodeKind):
    """A node that waits in its run's state (no worker): subclasses say on what and until when.

    :meth:`plan` gives what the attempt waits for and its deadline (or an error that fails it);
    :meth:`arrived` the wait's end before the deadline, if it came.
    """

    css_class = "wait"
    folds = (WAIT_FOLD,)

    def plan(self, task: TaskDef, state: RunState, now: float) -> tuple[str, float | None]:
        """What an attempt scheduled at ``now`` waits for, and its deadline (``None``: none)."""
        raise NotImplementedError

    def arrived(self, task: TaskDef, state: RunState, ts: TaskState) -> WaitEnded | None:
        """The end of the wait if what it waits for is there (before its deadline)."""
        return None

    def on_timeout(self, task: TaskDef, state: RunState, ts: TaskState) -> WaitEnded:
        """The end of the wait when its deadline passed."""
        return self.ended(state, task, ts.attempts, timed_out=True)

    def runs_on_worker(self, task: TaskDef) -> bool:
        """A wait holds no worker slot."""
        return False

    def on_scheduled(
        self, task: TaskDef, state: RunState, attempt: int, now: float
    ) -> list[h.HistoryEvent]:
        """Record what the attempt waits for; a deadline is a durable timer."""
        run_id = state.run_id
        failed: WaitEnded | None = None
        try:
            waits_for, deadline = self.plan(task, state, now)
        except Exception as exc:  # a user's ``until`` failed: the node fails, the run decides on
            waits_for, deadline = "nothing (it could not start)", None
            error = f"{type(exc).__name__}: {exc}"
            failed = self.ended(state, task, attempt, error=error, error_type="WaitError")
        timer_id = None if deadline is None else f"wait:{task.id}:{attempt}"
        events: list[h.HistoryEvent] = [
            WaitStarted(
                id=h.event_id(run_id, task.id, attempt, "wait-started"),
                run_id=run_id,
                ts=now,
                task_id=task.id,
                attempt=attempt,
                waits_for=waits_for,
                deadline=deadline,
                timer_id=timer_id,
            )
        ]
        if failed is not None:
            events.append(failed.model_copy(update={"ts": now}))
        elif timer_id is not None and deadline is not None:
            events.append(h.timer_started(run_id, timer_id, deadline, now))
        return events

    def decide(
        self, task: TaskDef, ts: TaskState, state: RunState, now: float, budget: int | None
    ) -> list[h.HistoryEvent]:
        """End the wait when what it waits for came, or when its deadline passed; start it
        again if its start was lost (the attempt is scheduled, not waiting)."""
        if ts.status == SCHEDULED:
            return self.on_scheduled(task, state, ts.attempts, now)
        if ts.status != WAITING:
            return []
        ended = self.arrived(task, state, ts)
        if ended is None:
            wait = state.extensions.get(WAIT_FOLD.key, {}).get("waits", {}).get(task.id, {})
            timer = wait.get("timer")
            if timer is None or timer in state.timers:
                return []
            ended = self.on_timeout(task, state, ts)
        return [ended.model_copy(update={"ts": now})]

    @staticmethod
    def ended(state: RunState, task: TaskDef, attempt: int, **fields: Any) -> WaitEnded:
        """The end of ``attempt``'s wait (``ts`` set by the caller)."""
        # A signal's id is in the event's: a node refused one signal (another node took it
        # first) takes the next one with an event of another id, not a repeat.
        taken = () if fields.get("signal_id") is None else (fields["signal_id"],)
        return WaitEnded(
            id=h.event_id(state.run_id, task.id, attempt, "wait-ended", *taken),
            run_id=state.run_id,
            task_id=task.id,
            attempt=attempt,
            **fields,
        )


class SleepOptions(KindOptions):
    """A sleep: ``duration`` seconds, or until the datetime ``until(context)`` returns."""

    duration: float | None = None
    until: Callable[[WaitContext], datetime] | None = None


def _epoch(value: Any) -> float:
    if not isinstance(value, datetime):
        raise TypeError(f"until must return a datetime, got {type(value).__name__}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)  # a naive datetime is read as UTC
    return float(value.timestamp())


class SleepKind(WaitKind):
    """A durable sleep: a timer in the run's history, no worker slot held meanwhile."""

    name = "sleep"
    label = "sleep"
    options_model = SleepOptions

    def plan(self, task: TaskDef, state: RunState, now: float) -> tuple[str, float | None]:
        """Until ``now + duration``, or the datetime ``until`` returns (called once)."""
        opts = self.options(task, SleepOptions)
        if opts.until is not None:
            deadline = _epoch(opts.until(wait_context(state, task)))
        else:
            assert opts.duration is not None  # the decorator asks for one of the two
            deadline = now + opts.duration
        return "a timer", deadline

    def on_timeout(self, task: TaskDef, state: RunState, ts: TaskState) -> WaitEnded:
        """Slept: the node completes (its output is ``None``)."""
        return self.ended(state, task, ts.attempts)


class SignalOptions(KindOptions):
    """A wait for the signal ``name``, at most ``timeout`` seconds (``None``: for ever)."""

    name: str
    timeout: float | None = None
    on_timeout: Literal["none", "fail"] = "none"


class SignalKind(WaitKind):
    """Waits for a signal sent to its run; the signal's data is its output."""

    name = "wait_for_signal"
    label = "wait for signal"
    options_model = SignalOptions

    def plan(self, task: TaskDef, state: RunState, now: float) -> tuple[str, float | None]:
        """The signal's name, and ``now + timeout``."""
        opts = self.options(task, SignalOptions)
        return f"signal {opts.name!r}", None if opts.timeout is None else now + opts.timeout

    def arrived(self, task: TaskDef, state: RunState, ts: TaskState) -> WaitEnded | None:
        """The oldest signal of its name not taken yet, taken."""
        name = self.options(task, SignalOptions).name
        for signal in state.extensions.get(WAIT_FOLD.key, {}).get("signals", ()):
            if signal["name"] == name:
                return self.ended(
                    state, task, ts.attempts, output=signal["data"], signal_id=signal["id"]
                )
        return None

    def on_timeout(self, task: TaskDef, state: RunState, ts: TaskState) -> WaitEnded:
        """``None``, or a failure with ``on_timeout="fail"``."""
        opts = self.options(task, SignalOptions)
        if opts.on_timeout == "fail":
            error = f"no signal {opts.name!r} within {opts.timeout:g}s"
            return self.ended(state, task, ts.attempts, timed_out=True, error=error)
        return self.ended(state, task, ts.attempts, timed_out=True)


SLEEP = SleepKind()
WAIT_FOR_SIGNAL = SignalKind()
