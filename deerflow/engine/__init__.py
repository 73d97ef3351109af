"""The engine's historical import path: a facade over :mod:`deerflow.runtime`,
:mod:`deerflow.core` and :mod:`deerflow.workflow` (see ARCHITECTURE.md for the layers)."""

from deerflow.core import RetryPolicy, TaskDef, Topics
from deerflow.runtime import (
    Engine,
    RunHandle,
    RunResult,
    TaskContext,
    TaskDispatch,
    TaskResult,
    TaskView,
    WorkflowRegistry,
    default_store,
)
from deerflow.workflow import Workflow

__all__ = [
    "Engine",
    "RetryPolicy",
    "RunHandle",
    "RunResult",
    "TaskContext",
    "TaskDef",
    "TaskDispatch",
    "TaskResult",
    "TaskView",
    "Topics",
    "Workflow",
    "WorkflowRegistry",
    "default_store",
]
