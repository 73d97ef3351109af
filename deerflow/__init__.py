"""deerflow: a Kafka-native, event-driven, durable workflow engine.

Workflows start from real events (Kafka messages, webhook calls, files in S3) and run to the
end as declared, across crashes, retries and machines. Every change to a run is an event in
its history; the embedded default keeps that history in SQLite, Kafka spreads it over machines.
"""

from deerflow.engine import (
    Engine,
    RetryPolicy,
    RunHandle,
    RunResult,
    TaskContext,
    TaskResult,
    Workflow,
)
from deerflow.events import EventTrigger
from deerflow.sagas import CompensatingAction, Saga, step
from deerflow.statemachine import State, StateMachine, Transition, on_enter, on_exit, on_transition
from deerflow.errors import (
    DeerflowError,
    DefinitionError,
    NonRetryableError,
    TaskError,
    TransitionNotAllowed,
)

__version__ = "0.1.0"

__all__ = [
    "CompensatingAction",
    "DeerflowError",
    "DefinitionError",
    "Engine",
    "EventTrigger",
    "NonRetryableError",
    "RetryPolicy",
    "RunHandle",
    "RunResult",
    "Saga",
    "State",
    "StateMachine",
    "TaskContext",
    "TaskError",
    "TaskResult",
    "Transition",
    "TransitionNotAllowed",
    "Workflow",
    "__version__",
    "on_enter",
    "on_exit",
    "on_transition",
    "step",
]
