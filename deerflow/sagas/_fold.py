"""The saga part of the history: the two events that end a rolled-back run, and their fold.

A run whose step failed rolls back (:mod:`deerflow.sagas._rollback`) and ends
``compensated`` when every compensation succeeded, or ``compensation_failed`` when one kept
failing. Both end the run in error, as ``RunFailed`` does, with their own status.
"""

from __future__ import annotations

from typing import Literal

from deerflow.core import FoldExtension, RunState
from deerflow.core import history as h
from deerflow.core.state import end_run
from deerflow.runtime.plugins import FoldsPlugin

RUN_COMPENSATED = "compensated"
RUN_COMPENSATION_FAILED = "compensation_failed"


class RunCompensated(h.HistoryEvent):
    """A run failed and every compensation of its completed steps succeeded (saga rollback)."""

    type: Literal["RunCompensated"] = "RunCompensated"
    error: str
    failed_task: str | None = None


class RunCompensationFailed(h.HistoryEvent):
    """A compensation kept failing: the rollback is incomplete and needs an operator."""

    type: Literal["RunCompensationFailed"] = "RunCompensationFailed"
    error: str
    failed_task: str | None = None
    failed_compensation: str | None = None


class CompensationFold(FoldExtension):
    """Ends a rolled-back run: ``compensated`` or ``compensation_failed``."""

    key = "saga"
    event_classes = (RunCompensated, RunCompensationFailed)
    terminal = frozenset({"RunCompensated", "RunCompensationFailed"})

    def fold(self, state: RunState, event: h.HistoryEvent) -> bool:
        """The run ends with the event's status, error and failed step."""
        if isinstance(event, RunCompensated):
            status = RUN_COMPENSATED
        elif isinstance(event, RunCompensationFailed):
            status = RUN_COMPENSATION_FAILED
        else:
            return False
        return end_run(state, status, event.ts, error=event.error, failed_task=event.failed_task)


COMPENSATION_FOLD = CompensationFold()
#: Histories are read without their definitions (a CLI, the run index): every engine adopts
#: this plugin (``deerflow.workflow.DEFAULT_PLUGINS``), whatever workflows it serves.
COMPENSATION_PLUGIN = FoldsPlugin(COMPENSATION_FOLD)
