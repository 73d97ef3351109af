"""What features and surfaces built on the runtime use besides the public API.

Patterns, choreography, pipelines, observability, the dashboard and the CLI import these
from here, never from the runtime's private modules (``lint-imports`` checks it).
"""

from deerflow.runtime._context import current_task
from deerflow.runtime._engine import ensure_loop_free, run_sync
from deerflow.runtime._offsets import OffsetTracker
from deerflow.runtime._results import run_result
from deerflow.runtime._runrows import RunQuery, attribute_value

__all__ = [
    "OffsetTracker",
    "RunQuery",
    "attribute_value",
    "current_task",
    "ensure_loop_free",
    "run_result",
    "run_sync",
]
