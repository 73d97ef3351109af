"""The pure ``fold``: state = fold(history).

The fold is deterministic and idempotent: events that make no sense in the current state (a
completion for an attempt that is not the current one, anything after the run ended) are
ignored, and so is a repeat of an event already folded (:mod:`deerflow.core.repeats`). So
duplicated, re-emitted or late events cannot change a run's outcome.

The fold here knows the core's events: runs (:mod:`deerflow.core.fold_runs`), tasks, timers,
and the children of expanded nodes (:mod:`deerflow.core.fold_tasks`: the generic mechanism
dynamic tasks, parallel tasks and map-reduce share, and any kind built on it). A feature or a
node kind folds its own events through a :class:`~deerflow.core.fold_extension.FoldExtension`
(:mod:`deerflow.core.fold_registry`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from deerflow.core import fold_runs, fold_tasks
from deerflow.core import history as h
from deerflow.core.fold_registry import extension_of
from deerflow.core.repeats import known_by_id, remember
from deerflow.core.state import RunState

#: what folds each of the core's event types (those :func:`deerflow.core.history.is_core_type`
#: names)
_APPLY: dict[str, Callable[[RunState, Any], bool]] = {**fold_runs.APPLY, **fold_tasks.APPLY}


def fold(state: RunState, event: h.HistoryEvent) -> bool:
    """Apply ``event`` to ``state`` in place; return whether it changed anything."""
    by_id = known_by_id(event)
    if by_id and event.id in state.seen:
        return False
    if state.terminal and not isinstance(event, (h.RunRequested, h.RunRetryRequested)):
        return False
    if not state.requested and not isinstance(event, h.RunRequested):
        # Events that overtake their RunRequested (other partitions, a lagging trigger) wait
        # for nothing: they are kept out of the state until the request arrives. A history
        # partition keeps per-run order, so this only happens for corrupted logs.
        return False
    apply = _APPLY.get(event.type)
    if apply is not None:
        changed = apply(state, event)
    else:
        extension = extension_of(event.type)
        changed = extension is not None and extension.fold(state, event)
    if by_id:
        # Kept even when it changed nothing: its repeat may come when it would (search
        # attributes set back to a value another event changed in between).
        remember(state, event.id)
    if changed:
        state.events += 1
    return changed


def fold_all(run_id: str, events: list[h.HistoryEvent]) -> RunState:
    """A fresh state folded from ``events`` in order."""
    state = RunState(run_id=run_id)
    for event in events:
        fold(state, event)
    return state
