"""The one exception tree of deerflow.

::

    DeerflowError                  (retriable: bool)
    ├── DefinitionError            invalid workflow definition, raised at definition time
    ├── TaskError                  a task failed (carries the task id and the error text)
    │   └── NonRetryableError      raise it from a task to fail it without further retries
    ├── OutputNotSerializable      a task returned something that is not JSON
    ├── RunFailed                  awaiting the result of a run that did not complete
    ├── RunNotFound                unknown run id
    ├── ConnectorError             a trigger source could not be read or acknowledged
    ├── EventStoreError            the event log could not be reached or written
    │   ├── ConcurrencyConflict    optimistic append failed (expected_version)
    │   ├── PayloadTooLarge        a record is larger than the log takes and no blob store holds it
    │   ├── PayloadUnreadable      a record's blob is missing or does not match its digest
    │   └── MissingDependency      an optional extra is not installed
    ├── SagaError
    │   └── CompensationFailed
    └── TransitionNotAllowed       a state-machine transition invalid in the current state

Engine-internal control flow (cancellation) derives from ``BaseException`` so that a user's
``except Exception`` cannot swallow it.
"""

from __future__ import annotations

from typing import Any


class DeerflowError(Exception):
    """Root of every error deerflow raises.

    Attributes:
        retriable: whether trying the same operation again may succeed.
    """

    retriable: bool = False

    def __init__(self, message: str, *, retriable: bool | None = None) -> None:
        super().__init__(message)
        if retriable is not None:
            self.retriable = retriable


class DefinitionError(DeerflowError):
    """A workflow definition is invalid; raised when it is defined, naming workflow and task."""


class TaskError(DeerflowError):
    """A task failed.

    Raise it (or any exception) from a task body to fail the attempt; ``retriable=False`` or
    :class:`NonRetryableError` skips the remaining retries.
    """

    retriable = True

    def __init__(
        self,
        message: str,
        *,
        task_id: str | None = None,
        retriable: bool | None = None,
        next_retry_delay: float | None = None,
    ) -> None:
        super().__init__(message, retriable=retriable)
        self.task_id = task_id
        self.next_retry_delay = next_retry_delay


class NonRetryableError(TaskError):
    """A task failure that must not be retried (bad input, permanent refusal)."""

    retriable = False

    def __init__(self, message: str, *, task_id: str | None = None) -> None:
        super().__init__(message, task_id=task_id, retriable=False)


class OutputNotSerializable(TaskError):
    """A task returned a value that cannot be encoded as JSON."""

    retriable = False


class RunFailed(DeerflowError):
    """The awaited run ended in a state other than ``completed``."""

    def __init__(self, message: str, *, run_id: str, status: str) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.status = status


class RunNotFound(DeerflowError):
    """No run with the given id exists in the store."""


class InvalidSignal(DeerflowError):
    """A signal's name, id or data is not what a signal may carry."""


class RunEnded(DeerflowError):
    """The run has ended: it takes no more signals."""

    def __init__(self, message: str, *, run_id: str, status: str) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.status = status


class ConnectorError(DeerflowError):
    """A trigger source failed (cannot read, parse or acknowledge)."""

    retriable = True


class EventStoreError(DeerflowError):
    """The event log could not be reached or written."""

    retriable = True


class ConcurrencyConflict(EventStoreError):
    """An append with ``expected_version`` found the stream at another version."""

    retriable = False


class PayloadTooLarge(EventStoreError):
    """A record is larger than the log accepts and no blob store is configured to hold it."""

    retriable = False


class PayloadUnreadable(EventStoreError):
    """A record refers to a blob that is missing, unreachable or not the bytes it names.

    Attributes:
        known: what the record says of itself without the blob (its small top-level fields,
            such as the run and task it belongs to), so a reader can name what it lost.
    """

    retriable = True  # a store that is down comes back; the reader retries the record

    def __init__(
        self, message: str, *, retriable: bool | None = None, known: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message, retriable=retriable)
        self.known = known or {}


class MissingDependency(EventStoreError):
    """An optional dependency is not installed; the message names the extra to install."""

    retriable = False


class SagaError(DeerflowError):
    """A saga could not complete."""


class CompensationFailed(SagaError):
    """A compensation kept failing; the run needs an operator."""


class TransitionNotAllowed(DeerflowError):
    """A state-machine transition is not valid from the instance's current state."""


class Cancelled(BaseException):
    """Raised inside a task body when its run is cancelled; ``except Exception`` misses it."""
