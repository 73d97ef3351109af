"""Flow control on workflows: concurrency keys, rate limits, debounce, batches.

``Workflow(..., concurrency=Concurrency(limit=10, key="params.customer_id"))`` runs at most
ten runs per customer at once, across every process; ``rate_limit=RateLimit(limit=100,
period="1m", key=...)`` starts at most a hundred per minute (the rest wait on a durable timer,
or are dropped). The state lives in the log: a run's history says it is queued, admitted or
dropped, and a gate per partition of the ``<prefix>.flow`` topic decides (see
:mod:`deerflow.flow._service` and the guide *Flow control*).
"""

from deerflow.flow._api import FlowMixin
from deerflow.flow._fold import (
    FLOW_FOLD,
    FLOW_PLUGIN,
    RUN_BATCHED,
    RUN_DROPPED,
    RUN_QUEUED,
    RUN_SUPERSEDED,
    BatchDue,
    BatchJoined,
    FlowReleased,
    RunAdmitted,
    RunBatched,
    RunDebounced,
    RunDropped,
    RunQueued,
    RunSuperseded,
)
from deerflow.flow._gate import PartitionGate
from deerflow.flow._service import FLOW, FlowPlugin, FlowRouter, Gate
from deerflow.flow._spec import Batch, Concurrency, Debounce, RateLimit

__all__ = [
    "FLOW",
    "FLOW_FOLD",
    "FLOW_PLUGIN",
    "RUN_BATCHED",
    "RUN_DROPPED",
    "RUN_QUEUED",
    "RUN_SUPERSEDED",
    "Batch",
    "BatchDue",
    "BatchJoined",
    "Concurrency",
    "Debounce",
    "FlowMixin",
    "FlowPlugin",
    "FlowReleased",
    "FlowRouter",
    "Gate",
    "PartitionGate",
    "RateLimit",
    "RunAdmitted",
    "RunBatched",
    "RunDebounced",
    "RunDropped",
    "RunQueued",
    "RunSuperseded",
]
