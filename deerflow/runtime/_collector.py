"""The pace of Python's cyclic garbage collector while an engine runs.

CPython collects its youngest generation every 700 net allocations of container objects, and
every tenth of those collections the middle one, and so on up to the oldest, which walks every
live object. A step of a run allocates dozens (events, the dispatch, futures, the task that
runs the attempt), so with hundreds of runs in flight the collector ran hundreds of times a
second and walked all of the runs' state every few seconds: 17-19 % of an in-process engine's
CPU at 500 chains in flight on SQLite, more at 5,000. Reference counting frees nearly all of
those objects; the collector is only needed for cycles.

While at least one engine of the process is started, the youngest generation is collected
every 50,000 allocations instead (cyclic garbage then waits a little longer: a few MB at most).
Only Python's default is replaced: a process that set thresholds of its own keeps them, and the
default comes back when the last engine stops.
"""

from __future__ import annotations

import gc
import threading

#: CPython's own thresholds (``gc.get_threshold()`` of a process that changed nothing).
PYTHON_DEFAULT = (700, 10, 10)
#: The thresholds while an engine runs.
ENGINE_THRESHOLDS = (50_000, 20, 10)

_lock = threading.Lock()
_holders = 0
_replaced = False


def hold() -> None:
    """An engine started: collect at the engine's pace, unless the process chose its own."""
    global _holders, _replaced
    with _lock:
        if _holders == 0 and gc.get_threshold() == PYTHON_DEFAULT:
            gc.set_threshold(*ENGINE_THRESHOLDS)
            _replaced = True
        _holders += 1


def release() -> None:
    """An engine stopped: the last one gives Python's default back (if it replaced it)."""
    global _holders, _replaced
    with _lock:
        _holders = max(0, _holders - 1)
        if _holders == 0 and _replaced:
            if gc.get_threshold() == ENGINE_THRESHOLDS:  # nobody changed them since
                gc.set_threshold(*PYTHON_DEFAULT)
            _replaced = False
