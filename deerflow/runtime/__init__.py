"""The runtime: runs definitions of :mod:`deerflow.core` on an event log of :mod:`deerflow.log`.

One process's :class:`Engine` holds an orchestrator (owns history partitions, folds them and
asks the core's decider what comes next), a worker (runs task bodies), the run index, and the
services of the plugins it adopted. Cross-cutting concerns attach through
:mod:`deerflow.runtime.hooks`; features and integrations plug in through
:mod:`deerflow.runtime.plugins`.
"""

from deerflow.runtime._context import TaskContext, TaskDispatch, TaskView
from deerflow.runtime._engine import Engine, RunHandle, default_store
from deerflow.runtime._registry import WorkflowRegistry
from deerflow.runtime._results import RunResult, TaskResult
from deerflow.runtime._service import BackgroundService
from deerflow.runtime.hooks import (
    HistoryFolded,
    HookChain,
    Hooks,
    ScheduleTicks,
    TaskAttempt,
    TaskEnded,
    WorkerStarting,
)
from deerflow.runtime.plugins import Plugin, Service
from deerflow.runtime.rebuild import GroupMember, Rebuildable, RebuildingMember

__all__ = [
    "BackgroundService",
    "Engine",
    "GroupMember",
    "HistoryFolded",
    "HookChain",
    "Hooks",
    "Plugin",
    "Rebuildable",
    "RebuildingMember",
    "RunHandle",
    "RunResult",
    "ScheduleTicks",
    "Service",
    "TaskAttempt",
    "TaskContext",
    "TaskDispatch",
    "TaskEnded",
    "TaskResult",
    "TaskView",
    "WorkerStarting",
    "WorkflowRegistry",
    "default_store",
]
