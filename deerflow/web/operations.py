"""Run and dead-letter operations the dashboard, the API and the CLI share.

``deerflow runs ...`` and ``deerflow dlq ...`` answer what the dashboard shows: the CLI
imports these from here, never from the dashboard's private modules (``lint-imports`` checks
it).
"""

from deerflow.web._dlq import DeadLetterEntry, dead_letters, find_letter, replay
from deerflow.web._runs import (
    RunFilter,
    attempts,
    child_runs,
    find_run,
    history,
    list_runs,
    parse_time,
    request_cancel,
    request_retry,
    request_signal,
    result_of,
    summary,
    trigger_label,
)

__all__ = [
    "DeadLetterEntry",
    "RunFilter",
    "attempts",
    "child_runs",
    "dead_letters",
    "find_letter",
    "find_run",
    "history",
    "list_runs",
    "parse_time",
    "replay",
    "request_cancel",
    "request_retry",
    "request_signal",
    "result_of",
    "summary",
    "trigger_label",
]
