"""deerflow: a Kafka-native, event-driven, durable workflow engine.

Workflows start from real events (Kafka messages, webhook calls, files in S3) and run to the
end as declared, across crashes, retries and machines. Every change to a run is an event in
its history; the embedded default keeps that history in SQLite, Kafka spreads it over machines.
"""

# The engine first: pattern modules import engine submodules while the engine package loads.
import deerflow.engine as _engine  # noqa: F401

# Registers the service that runs event handlers with every Engine (see deerflow.choreography).
from deerflow import _choreography_service as _choreography_service
from deerflow.choreography import publish_event, publish_event_async
from deerflow.engine import (
    Engine,
    RetryPolicy,
    RunHandle,
    RunResult,
    TaskContext,
    TaskResult,
    Workflow,
)
from deerflow.errors import (
    DeerflowError,
    DefinitionError,
    NonRetryableError,
    TaskError,
    TransitionNotAllowed,
)
from deerflow.events import EventTrigger
from deerflow.eventstore import EventStore
from deerflow.patterns import (
    DynamicTasks,
    MapReduce,
    SubWorkflow,
    TemplateParameterError,
    WorkflowTemplate,
    compose_workflows,
    gather,
    parallel,
)
from deerflow.pipeline import Backpressure, Pipeline, stage
from deerflow.sagas import CompensatingAction, Saga, step
from deerflow.statemachine import State, StateMachine, Transition, on_enter, on_exit, on_transition

__version__ = "0.1.0"

__all__ = [
    "Backpressure",
    "CompensatingAction",
    "DeerflowError",
    "DefinitionError",
    "DynamicTasks",
    "Engine",
    "EventStore",
    "EventTrigger",
    "MapReduce",
    "NonRetryableError",
    "Pipeline",
    "RetryPolicy",
    "RunHandle",
    "RunResult",
    "Saga",
    "State",
    "StateMachine",
    "SubWorkflow",
    "TaskContext",
    "TaskError",
    "TaskResult",
    "TemplateParameterError",
    "Transition",
    "TransitionNotAllowed",
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
