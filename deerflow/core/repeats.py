"""Which events the fold recognises as repeats, in a window that does not grow with a run.

Repeats are recognised in two ways, and neither grows with the run's history:

* **by content**, whatever the distance: the types in :data:`BY_CONTENT` only ever move their
  part of the state forward (an attempt's number, a timer that fired, the run's request, its
  retry number, its end), so a repeat finds that part already past it and changes nothing;
* **by id**, for every other type (skips and abandons, which an operator retry undoes, a failed
  run's end, parking, search attributes, timers of no task and every fold extension's events):
  a run keeps the ids of the last :data:`SEEN_LIMIT` such events it read, in
  ``RunState.seen``. A repeat of one of them is recognised while fewer than that many others
  were read since; a redelivery or an append retried after an ambiguous failure comes back
  that soon. One arriving later is folded again, as a new event would be.
"""

from __future__ import annotations

from deerflow.core import history as h
from deerflow.core.state import RunState

#: how many ids of events whose repeats are known by id (not :data:`BY_CONTENT`) a run keeps
SEEN_LIMIT = 256

#: the event types whose repeats the fold ignores by their content, however late they come
#: (a timer's start only when it names its task and attempt: a retry timer)
BY_CONTENT = frozenset(
    {
        "RunRequested",  # a run is requested once
        "TaskScheduled",  # an attempt number not above the task's latest
        "TaskRequeued",  # the attempt is no longer eager
        "TaskCompleted",  # the attempt is no longer the scheduled one
        "TaskFailed",
        "TaskCollected",  # the node is no longer expanded (completed stays completed)
        "TimerStarted",
        "TimerFired",  # the timer is gone, and a repeat of its start is known (a retry timer's
        # by content, another's by id within the window)
        "RunCompleted",  # ends the run for good: only a failed run is retried
        "RunCancelled",
        "RunCancelRequested",
        "RunRetryRequested",  # its number is not the next retry
    }
)


def known_by_id(event: h.HistoryEvent) -> bool:
    """Whether a repeat of ``event`` is known by its id (else by its content).

    A timer of no task's attempt could start again once fired: only its id tells.
    """
    return event.type not in BY_CONTENT or (
        isinstance(event, h.TimerStarted) and (event.task_id is None or event.attempt is None)
    )


def remember(state: RunState, event_id: str) -> None:
    """Keep ``event_id`` among the run's last :data:`SEEN_LIMIT` ids, dropping the oldest."""
    seen = state.seen
    seen[event_id] = state.events
    while len(seen) > SEEN_LIMIT:
        del seen[next(iter(seen))]  # dicts keep insertion order: the oldest comes first
