"""Runs that wait: durable sleeps, signals and S3 objects, holding no worker while they wait.

::

    @wf.sleep(id="cool_down", duration="10m", depends_on=["load"])
    @wf.wait_for_signal(id="approval", name="approve", timeout="1h", depends_on=["cool_down"])
    @wf.wait_for_object(id="landed", bucket="raw", key="day={params.day}/_SUCCESS", timeout="6h")

A waiting node's attempt is recorded as scheduled, then as waiting (what for, until when)
until it ends; its deadline is a durable timer of the run's history. A signal
(``engine.signal(run_id, name, data)``) is a history event of its run, kept until a node
waiting for its name takes it. An object sensor checks on a worker every ``poke``, its
checks spaced by durable retry timers.
"""

from deerflow.core.state import waits_of  # every kind's waits: these and others
from deerflow.waiting._api import WaitingMixin
from deerflow.waiting._duration import seconds
from deerflow.waiting._fold import (
    MAX_PENDING,
    WAIT_FOLD,
    WAIT_PLUGIN,
    WAITING,
    SignalReceived,
    WaitArmed,
    WaitEnded,
    WaitFold,
    WaitStarted,
    pending_signals,
)
from deerflow.waiting._kinds import (
    SLEEP,
    WAIT_FOR_SIGNAL,
    SignalKind,
    SleepKind,
    WaitContext,
    WaitKind,
)
from deerflow.waiting._s3 import WAIT_FOR_OBJECT, ObjectKind, ObjectNotYetPresent

__all__ = [
    "MAX_PENDING",
    "SLEEP",
    "WAITING",
    "WAIT_FOLD",
    "WAIT_FOR_OBJECT",
    "WAIT_FOR_SIGNAL",
    "WAIT_PLUGIN",
    "ObjectKind",
    "ObjectNotYetPresent",
    "SignalKind",
    "SignalReceived",
    "SleepKind",
    "WaitArmed",
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
