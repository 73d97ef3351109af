"""deerflow: a Kafka-native, event-driven, durable workflow engine.

Workflows start from real events (Kafka messages, webhook calls, files in S3) and run to the
end as declared, across crashes, retries and machines. Every change to a run is an event in
its history; the embedded default keeps that history in SQLite, Kafka spreads it over machines.
"""

from deerflow.choreography import publish_event, publish_event_async
from deerflow.core import RetryPolicy
from deerflow.errors import (
    DeerflowError,
    DefinitionError,
    NonRetryableError,
    RunEnded,
    TaskError,
    TransitionNotAllowed,
)
from deerflow.events import EventTrigger, Schedule, ScheduleTickEvent
from deerflow.eventstore import EventStore
from deerflow.flow import Batch, Concurrency, Debounce, RateLimit
from deerflow.matching import CancelOn
from deerflow.patterns import DynamicTasks, MapReduce, SubWorkflow, gather, parallel
from deerflow.pipeline import Backpressure, Pipeline, stage
from deerflow.runtime import Engine, RunHandle, RunResult, TaskContext, TaskResult
from deerflow.sagas import CompensatingAction, Saga, step
from deerflow.statemachine import State, StateMachine, Transition, on_enter, on_exit, on_transition
from deerflow.waiting import WaitContext
from deerflow.workflow import TemplateParameterError, Workflow, WorkflowTemplate, compose_workflows

__version__ = "0.1.0"

__all__ = [
    "Backpressure",
    "Batch",
    "CancelOn",
    "CompensatingAction",
    "Concurrency",
    "Debounce",
    "DeerflowError",
    "DefinitionError",
    "DynamicTasks",
    "Engine",
    "EventStore",
    "EventTrigger",
    "MapReduce",
    "NonRetryableError",
    "Pipeline",
    "RateLimit",
    "RetryPolicy",
    "RunEnded",
    "RunHandle",
    "RunResult",
    "Saga",
    "Schedule",
    "ScheduleTickEvent",
    "State",
    "StateMachine",
    "SubWorkflow",
    "TaskContext",
    "TaskError",
    "TaskResult",
    "TemplateParameterError",
    "Transition",
    "TransitionNotAllowed",
    "WaitContext",
    "Workflow",
    "WorkflowTemplate",
    "__version__",
    "compose_workflows",
    "gather",
    "on_enter",
    "on_exit",
    "on_transition",
    "parallel",
    "publish_event",
    "publish_event_async",
    "stage",
    "step",
]
