"""A task definition and its retry policy: the data every kind of node is made of."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from deerflow.core.kinds import TASK, KindOptions, NodeKind
from deerflow.errors import DefinitionError

ID_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a failed task is retried.

    ``retries`` further attempts after the first; the n-th retry waits
    ``retry_delay * backoff ** (n - 1)`` seconds, at most ``max_retry_delay``.
    """

    retries: int = 0
    retry_delay: float = 1.0
    backoff: float = 2.0
    max_retry_delay: float = 300.0

    @property
    def max_attempts(self) -> int:
        """First attempt plus retries."""
        return self.retries + 1

    def delay_before(self, attempt: int) -> float:
        """Seconds to wait before ``attempt`` (2 = first retry)."""
        delay = self.retry_delay * self.backoff ** max(0, attempt - 2)
        return float(min(delay, self.max_retry_delay))


@dataclass(slots=True)
class TaskDef:
    """One node of a workflow's DAG.

    ``kind`` is a :class:`~deerflow.core.kinds.NodeKind`: :data:`~deerflow.core.kinds.TASK`
    for a plain task; features (dynamic tasks, fan-out, map-reduce, sub-workflows, sagas, state
    machines) bring their own, with their own ``fn`` contract. ``options`` are the kind's: a
    mapping, validated into the kind's options model when the node is added to a workflow.
    ``compensation`` is the task that undoes this one when the run fails later (sagas); it runs
    only then. ``priority``: where its attempts queue for a worker slot, a higher one starts
    first; ``None`` takes the run's (``engine.start(priority=...)``).
    """

    id: str
    fn: Callable[..., Any] | None
    depends_on: tuple[str, ...] = ()
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: float | None = None
    fallback: Callable[..., Any] | None = None
    kind: NodeKind = TASK
    options: Mapping[str, Any] | KindOptions = field(default_factory=dict)
    compensation: TaskDef | None = None
    priority: int | None = None

    @property
    def is_async(self) -> bool:
        """Whether the body is a coroutine function (run on the loop, not in a thread)."""
        return self.fn is not None and inspect.iscoroutinefunction(self.fn)


def positive_or_none(
    workflow: str, task: str | None, name: str, value: float | None
) -> float | None:
    """``value`` as a float, ``None`` kept; :class:`DefinitionError` unless it is > 0."""
    if value is None:
        return None
    if value <= 0:
        raise DefinitionError(f"workflow {workflow!r}, task {task!r}: {name} must be > 0")
    return float(value)


def task_priority(workflow: str, task: str | None, value: object) -> int | None:
    """``value`` as a task's priority (a whole number, ``None`` kept); :class:`DefinitionError`
    names the task otherwise."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise DefinitionError(
        f"workflow {workflow!r}, task {task!r}: priority must be a whole number, not {value!r}"
    )


def retry_policy(
    workflow: str,
    task: str | None,
    retries: int,
    retry_delay: float,
    backoff: float,
    max_retry_delay: float,
) -> RetryPolicy:
    where = f"workflow {workflow!r}, task {task!r}"
    if retries < 0:
        raise DefinitionError(f"{where}: retries must be >= 0")
    if retry_delay < 0 or max_retry_delay < 0:
        raise DefinitionError(f"{where}: retry delays must be >= 0")
    if backoff < 1:
        raise DefinitionError(f"{where}: backoff must be >= 1")
    return RetryPolicy(retries, float(retry_delay), float(backoff), float(max_retry_delay))
