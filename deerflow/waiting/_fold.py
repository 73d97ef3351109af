"""The waiting part of the history: a node starts and ends a wait, a run receives a signal.

A waiting node (a sleep, a wait for a signal) holds no worker slot and does not count under
``max_parallel``: its attempt is recorded as scheduled, then :class:`WaitStarted` moves it to
:data:`WAITING` until :class:`WaitEnded` completes it (or fails it, after a timeout with
``on_timeout="fail"``). Deadlines are the core's durable timers, re-armed from the history
by whichever process owns the run.

Signals are kept in the run's state until a node takes them: one sent before its node is
reached waits there (at most :data:`MAX_PENDING` per run, the oldest dropped first), and each
is taken once: by its id, the fold refuses a second :class:`WaitEnded` taking it and a repeat
of the signal itself.
"""

from __future__ import annotations

from typing import Any, Literal

from deerflow.core import FoldExtension, RunState
from deerflow.core import history as h
from deerflow.core.state import COMPLETED, RETRY_WAIT, SCHEDULED, Wait
from deerflow.runtime.plugins import FoldsPlugin

#: the status of a node that waits
WAITING = "waiting"
#: signals kept for nodes not reached yet, per run (the oldest dropped beyond); with the
#: engine's limit on a signal's data, what one run keeps stays under 4 MiB
MAX_PENDING = 64
#: ids of signals already taken, per run, to refuse a repeat arriving later
MAX_DELIVERED = 100


class WaitStarted(h.HistoryEvent):
    """An attempt of a node waits: ``waits_for`` says on what, until ``deadline`` at most."""

    type: Literal["WaitStarted"] = "WaitStarted"
    task_id: str
    attempt: int
    waits_for: str
    deadline: float | None = None
    timer_id: str | None = None


class WaitArmed(h.HistoryEvent):
    """A node that checks on a worker (an object sensor) waits from ``attempt`` on: for what,
    until when at most. Its attempts, not the fold, say when the wait ends."""

    type: Literal["WaitArmed"] = "WaitArmed"
    task_id: str
    attempt: int
    waits_for: str
    deadline: float | None = None


class WaitEnded(h.HistoryEvent):
    """The wait of an attempt ended: with ``output``, or failed with ``error`` (a timeout)."""

    type: Literal["WaitEnded"] = "WaitEnded"
    task_id: str
    attempt: int
    output: Any = None
    signal_id: str | None = None
    timed_out: bool = False
    error: str | None = None
    error_type: str = "WaitTimedOut"


class SignalReceived(h.HistoryEvent):
    """A signal was sent to the run: ``name`` and its JSON ``data``, ``signal_id`` unique."""

    type: Literal["SignalReceived"] = "SignalReceived"
    signal_id: str
    name: str
    data: Any = None


class WaitFold(FoldExtension):
    """Folds waits and signals into ``state.extensions["waiting"]``.

    Its part: ``waits`` (task id -> the current wait: attempt, what for, deadline, timer),
    ``signals`` (received, not taken yet: id, name, data, oldest first) and ``taken`` (the
    ids of the last signals taken).
    """

    key = "waiting"
    event_classes = (WaitStarted, WaitArmed, WaitEnded, SignalReceived)

    def fold(self, state: RunState, event: h.HistoryEvent) -> bool:
        """Apply a wait's start or end, or a signal."""
        if isinstance(event, WaitStarted):
            return self._started(state, event)
        if isinstance(event, WaitEnded):
            return self._ended(state, event)
        if isinstance(event, SignalReceived):
            return self._signal(state, event)
        if isinstance(event, WaitArmed):
            return self._armed(state, event)
        return False

    def _armed(self, state: RunState, e: WaitArmed) -> bool:
        waits = self.part(state).setdefault("waits", {})
        known = waits.get(e.task_id)
        if known is not None and known["attempt"] >= e.attempt:
            return False  # a repeat, or an older series of checks
        waits[e.task_id] = {"attempt": e.attempt, "for": e.waits_for, "deadline": e.deadline}
        return True

    def _started(self, state: RunState, e: WaitStarted) -> bool:
        task = state.tasks.get(e.task_id)
        if task is None or task.status != SCHEDULED or task.attempts != e.attempt:
            return False
        task.status = WAITING
        task.fire_at = e.deadline
        state.running -= 1  # a wait holds no slot: other nodes may run meanwhile
        self.part(state).setdefault("waits", {})[e.task_id] = {
            "attempt": e.attempt,
            "for": e.waits_for,
            "deadline": e.deadline,
            "timer": e.timer_id,
        }
        return True

    def _ended(self, state: RunState, e: WaitEnded) -> bool:
        task = state.tasks.get(e.task_id)
        if task is None or task.status != WAITING or task.attempts != e.attempt:
            return False
        part = self.part(state)
        if e.signal_id is not None:
            signals: list[dict[str, Any]] = part.get("signals", [])
            index = next((i for i, s in enumerate(signals) if s["id"] == e.signal_id), None)
            if index is None:
                return False  # taken by another node already (decided on the same state)
            del signals[index]
            taken: list[str] = part.setdefault("taken", [])
            taken.append(e.signal_id)
            del taken[:-MAX_DELIVERED]
        part.get("waits", {}).pop(e.task_id, None)
        task.fire_at = None
        task.finished_at = e.ts
        if e.error is not None:
            # Failed for good (a timeout is not retried); a fallback still applies.
            task.status = RETRY_WAIT
            task.error, task.error_type = e.error, e.error_type
            task.retriable = False
            task.failed_at = e.ts
            return True
        task.status = COMPLETED
        task.output = e.output
        task.error = None
        return True

    def waits(self, state: RunState) -> dict[str, Wait]:
        """Sleeps, signal waits and object sensors: what each waits for, until when."""
        waits = state.extensions.get(self.key, {}).get("waits", {})
        return {tid: {"for": w["for"], "deadline": w["deadline"]} for tid, w in waits.items()}

    def _signal(self, state: RunState, e: SignalReceived) -> bool:
        part = self.part(state)
        signals: list[dict[str, Any]] = part.setdefault("signals", [])
        if e.signal_id in part.get("taken", ()) or any(s["id"] == e.signal_id for s in signals):
            return False
        signals.append({"id": e.signal_id, "name": e.name, "data": e.data})
        del signals[:-MAX_PENDING]
        return True


def pending_signals(state: RunState) -> list[dict[str, Any]]:
    """Signals the run received that no node took yet (id, name, data), oldest first."""
    return list(state.extensions.get(WaitFold.key, {}).get("signals", ()))


WAIT_FOLD = WaitFold()
#: Histories are read without their definitions (a CLI, the run index): every engine adopts
#: this plugin (``deerflow.workflow.DEFAULT_PLUGINS``), whatever workflows it serves.
WAIT_PLUGIN = FoldsPlugin(WAIT_FOLD)
