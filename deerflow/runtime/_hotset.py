"""Which runs an orchestrator keeps in memory: a bounded hot set, least recently used go first.

An owner holds the folded state of every live run of its partitions; most of them usually wait
(on a timer, an event, a signal, a child, a flow-control gate) and need nothing until a record
concerns them. :class:`HotSet` keeps at most ``limit`` states in memory: past it, the least
recently used runs that are *idle* (nothing in flight: no attempt scheduled or running) are
evicted to the owner's :class:`~deerflow.runtime._coldruns.ColdRuns`, and loaded back when a
record concerns them. A run with an attempt in flight stays (its outcome comes soon, and the
worker asks the owner about it): the limit bounds idle runs, the workers' concurrency and flow
control bound the others.

Eviction runs between the loop's rounds in slices of at most :data:`EVICT_SLICE` runs, the
loop getting a turn between two (encoding and storing 2,000 newly idle runs at once held the
loop for about 100 ms). Within a round the held runs can exceed the limit by the runs the
round folds into (at most the records one poll returns, :func:`poll_size`) and by the runs
started meanwhile in this process; the next round's eviction brings them back under it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping

from deerflow.core.state import SCHEDULED, RunState
from deerflow.errors import DeerflowError
from deerflow.runtime._settings import whole_number

__all__ = ["EVICT_SLICE", "MAX_HELD_RUNS", "HotSet", "held_runs_setting", "idle", "poll_size"]

#: run states an orchestrator holds in memory at most by default (about 1.5 kB each for a run
#: waiting on one node: some 15 MB), before the idle ones least recently used are evicted
MAX_HELD_RUNS = 10_000
SCAN_SLACK = 1000  # runs looked at beyond the excess per round, at most (busy ones are skipped)
EVICT_SLICE = 100  # runs evicted at once, at most (about 5 ms), before the loop gets a turn
POLL_RECORDS = 2000  # history records a round folds at most
MIN_POLL_RECORDS = 100  # ... however low the limit is (a round of fewer would crawl)


def poll_size(limit: int) -> int:
    """History records a round folds at most with ``limit`` runs held: never more than the
    limit itself (above :data:`MIN_POLL_RECORDS`), so a round's runs at most double it."""
    return max(MIN_POLL_RECORDS, min(POLL_RECORDS, limit))


def held_runs_setting(given: int | None) -> int:
    """``max_held_runs`` as given, else ``DEERFLOW_MAX_HELD_RUNS``, else :data:`MAX_HELD_RUNS`.

    Raises:
        DeerflowError: it is not a whole number of runs, at least 1.
    """
    given = whole_number(given, "DEERFLOW_MAX_HELD_RUNS", MAX_HELD_RUNS, "runs")
    if isinstance(given, bool) or not isinstance(given, int) or given < 1:
        raise DeerflowError(
            f"max_held_runs must be a whole number of runs, 1 or more, not {given!r}"
        )
    return given


def idle(state: RunState) -> bool:
    """Whether nothing is in flight for the run: it has not ended, and no attempt of it is
    scheduled or running (it waits on a timer, an event, a signal, a child or a gate)."""
    if state.terminal or state.running:
        return False
    return all(task.status != SCHEDULED for task in state.tasks.values())


class HotSet:
    """The held runs in the order they were last used, and which to evict.

    Args:
        limit: run states held at most, as far as idle ones can be evicted.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._recent: OrderedDict[str, None] = OrderedDict()
        #: the most runs held at the end of a round (after evicting) since this was made
        self.peak = 0
        #: the most runs held within a round (after its folds, before evicting)
        self.peak_in_round = 0
        #: the most runs evicted at once (:data:`EVICT_SLICE` at most)
        self.largest_slice = 0

    def __len__(self) -> int:
        return len(self._recent)

    def touch(self, run_id: str) -> None:
        """``run_id`` was used now (held, loaded back, folded into)."""
        recent = self._recent
        if run_id in recent:
            recent.move_to_end(run_id)
        else:
            recent[run_id] = None

    def discard(self, run_id: str) -> None:
        """``run_id`` is no longer held."""
        self._recent.pop(run_id, None)

    def pick(
        self,
        runs: Mapping[str, RunState],
        evictable: Callable[[str], bool],
        most: int = EVICT_SLICE,
    ) -> list[RunState]:
        """The held runs to evict now: the least recently used idle ones past the limit, at
        most ``most`` of them (a slice).

        Runs found busy are moved to the recent end, so the next round does not look at them
        again first; at most the excess (past the limit) plus :data:`SCAN_SLACK` runs are
        looked at.
        """
        self.peak_in_round = max(self.peak_in_round, len(runs))
        over = len(runs) - self.limit
        excess = min(over, most)
        if excess <= 0:
            return []
        chosen: list[RunState] = []
        busy: list[str] = []
        stale: list[str] = []
        for looked, run_id in enumerate(self._recent):
            # Looked at up to the whole excess (not the slice): a slice's worth of busy runs
            # at the old end must not hide the idle ones behind them until later rounds.
            if len(chosen) >= excess or looked >= over + SCAN_SLACK:
                break
            state = runs.get(run_id)
            if state is None:
                stale.append(run_id)
            elif idle(state) and evictable(run_id):
                chosen.append(state)
            else:
                busy.append(run_id)
        for run_id in stale:
            del self._recent[run_id]
        for run_id in busy:
            self._recent.move_to_end(run_id)
        self.largest_slice = max(self.largest_slice, len(chosen))
        return chosen

    def settled(self, held: int) -> None:
        """Note how many runs are held at the end of a round."""
        self.peak = max(self.peak, held)
