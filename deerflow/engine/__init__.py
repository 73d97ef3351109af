"""Definitions, run state, the pure decider and the runtime (orchestrator, worker, engine)."""

from deerflow.engine._context import TaskContext, TaskDispatch, TaskView
from deerflow.engine._definition import RetryPolicy, TaskDef, Workflow
from deerflow.engine._engine import Engine, RunHandle, default_store
from deerflow.engine._registry import WorkflowRegistry
from deerflow.engine._results import RunResult, TaskResult
from deerflow.engine._topics import Topics

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
