"""The pure core: what a workflow is and how a run moves, with no I/O.

A definition (:class:`WorkflowDef`, :class:`TaskDef`, :class:`RetryPolicy` built from the
decorators' :class:`RetryOptions`), the history
events of a run and their deterministic ids (``_history``), the fold of a history into a run's
state (``_state``; features fold their own history events through a :class:`FoldExtension`),
the decider that says what happens next (``_decide*``), node kinds
(:class:`NodeKind`, with typed :class:`KindOptions`; ``_kinds``), the child ids of nodes with
children (``_expand``), definition changes (``_change``) and topic names (``_topics``).
Time is passed in; nothing here imports asyncio, a log backend, tracing or a feature package.
"""

from deerflow.core._definition import MachineModel, RetryPolicy, TaskDef, WorkflowDef
from deerflow.core._history import HistoryEvent
from deerflow.core._kinds import TASK, KindOptions, NodeKind
from deerflow.core._retry import RetryOptions
from deerflow.core._state import FoldExtension, RunState, TaskState, register_fold
from deerflow.core._topics import Topics

__all__ = [
    "TASK",
    "FoldExtension",
    "HistoryEvent",
    "KindOptions",
    "MachineModel",
    "NodeKind",
    "RetryOptions",
    "RetryPolicy",
    "RunState",
    "TaskDef",
    "TaskState",
    "Topics",
    "WorkflowDef",
    "register_fold",
]
