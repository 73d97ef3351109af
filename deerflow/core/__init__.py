"""The pure core: what a workflow is and how a run moves, with no I/O.

A definition (:class:`WorkflowDef`, :class:`TaskDef`, :class:`RetryPolicy` built from the
decorators' :class:`RetryOptions`), the history events of a run and their deterministic ids
(``history``), the fold of a history into a run's state (``fold``, into a ``state``; features
fold their own history events through a :class:`FoldExtension`), the decider that says what
happens next (``decide``, ``decide_nodes``), node kinds (:class:`NodeKind`, with typed
:class:`KindOptions`; ``kinds``), the child ids of nodes with children (``expand``),
definition changes (``change``) and topic names (``topics``). Its modules are public: the
runtime and the features build on them. Time is passed in; nothing here imports asyncio, a
log backend, tracing or a feature package.
"""

from deerflow.core.definition import RetryPolicy, TaskDef, WorkflowDef
from deerflow.core.history import HistoryEvent
from deerflow.core.kinds import TASK, KindOptions, NodeKind
from deerflow.core.retry import RetryOptions
from deerflow.core.state import FoldExtension, RunState, TaskState, register_fold
from deerflow.core.topics import Topics

__all__ = [
    "TASK",
    "FoldExtension",
    "HistoryEvent",
    "KindOptions",
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
