"""Runs that wait: durable sleeps and waits for signals, holding no worker while they wait.

::

    @wf.sleep(id="cool_down", duration="10m", depends_on=["load"])
    @wf.wait_for_signal(id="approval", name="approve", timeout="1h", depends_on=["cool_down"])

A waiting node's attempt is recorded as scheduled, then as waiting (what for, until when)
until it ends; its deadline is a durable timer of the run's history. A signal
(``engine.signal(run_id, name, data)``) is a history event of its run, kept until a node
waiting for its name takes it.
"""

from deerflow.waiting._api import WaitingMixin
from deerflow.waiting._duration import seconds
from deerflow.waiting._fold import (
    MAX_PENDING,
    WAIT_FOLD,
    WAITING,
    SignalReceived,
    WaitEnded,
    WaitFold,
    WaitStarted,
    pending_signals,
    waits_of,
)
from deerflow.waiting._kinds import (
    SLEEP,
    WAIT_FOR_SIGNAL,
    SignalKind,
    SleepKind,
    WaitContext,
    WaitKind,
)

__all__ = [
    "MAX_PENDING",
    "SLEEP",
    "WAITING",
    "WAIT_FOLD",
    "WAIT_FOR_SIGNAL",
    "SignalKind",
    "SignalReceived",
    "SleepKind",
    "WaitContext",
    "WaitEnded",
    "WaitFold",
    "WaitKind",
    "WaitStarted",
    "WaitingMixin",
    "pending_signals",
    "seconds",
    "waits_of",
]
