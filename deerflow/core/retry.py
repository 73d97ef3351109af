"""The retry options every decorator takes, as one value.

``@workflow.task``, the patterns' decorators and nodes (``parallel_tasks``, ``dynamic_tasks``,
``map_reduce``, ``sub_workflow``), saga steps, ``compose_workflows`` entries and
``@workflow.event_handler`` all accept ``retries``, ``retry_delay``, ``backoff``,
``max_retry_delay`` and ``timeout``. They keep those keyword arguments and hand them on as one
:class:`RetryOptions`, which validates them and builds the :class:`RetryPolicy` (an error names
the workflow and the task).
"""

from __future__ import annotations

from dataclasses import dataclass

from deerflow.core.taskdef import RetryPolicy, positive_or_none, retry_policy


@dataclass(frozen=True, slots=True)
class RetryOptions:
    """How a task (or handler) is retried, and how long one attempt may take.

    ``retries`` further attempts after the first; the n-th retry waits
    ``retry_delay * backoff ** (n - 1)`` seconds, at most ``max_retry_delay``; ``timeout``
    seconds one attempt may take (``None``: no limit).
    """

    retries: int = 0
    retry_delay: float = 1.0
    backoff: float = 2.0
    max_retry_delay: float = 300.0
    timeout: float | None = None

    def policy(self, workflow: str, task: str | None) -> RetryPolicy:
        """The validated policy of ``workflow``'s ``task``; :class:`DefinitionError` names both."""
        return retry_policy(
            workflow, task, self.retries, self.retry_delay, self.backoff, self.max_retry_delay
        )

    def attempt_timeout(self, workflow: str, task: str | None) -> float | None:
        """The validated ``timeout`` (> 0 or ``None``); :class:`DefinitionError` names both."""
        return positive_or_none(workflow, task, "timeout", self.timeout)
