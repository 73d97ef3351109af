"""How the engine's payloads reach its log: the claim check it is given, and the size limit.

:func:`payload_log` puts the engine's log behind a :class:`~deerflow.payloads.ClaimCheck`
when a blob store is configured (``Engine(blobs=...)``, ``DEERFLOW_BLOBS``; a SQLite store
file defaults to a directory beside it), and :func:`within_limit` turns an outcome the log
cannot take into a failure of its task, instead of an append retried forever, and
:func:`refused` does the same for what the orchestrator decides (task messages, a run's end,
child runs' requests and reports); :func:`lost_input` names the attempt whose task message's
payload is lost, to fail it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from pydantic import ValidationError

from deerflow.core import history as h
from deerflow.errors import EventStoreError, PayloadTooLarge
from deerflow.log.base import EventLog, Message, Record
from deerflow.log.sqlite import SqliteEventLog
from deerflow.payloads import (
    DEFAULT_THRESHOLD,
    BlobStore,
    ClaimCheck,
    LocalBlobStore,
    PayloadLog,
    beyond_limit,
    lost_fields,
    open_blob_store,
    payload_error,
    size_text,
)
from deerflow.runtime._context import TaskDispatch

__all__ = ["check_fits", "lost_input", "payload_log", "refused", "within_limit"]

#: ``DEERFLOW_BLOBS`` (or ``blobs=``) set to this keeps every payload in the log itself.
NO_BLOBS = "none"


def payload_log(
    log: EventLog, blobs: str | BlobStore | None = None, threshold: int | None = None
) -> EventLog:
    """``log`` as the engine uses it: behind a claim check when a blob store is configured.

    Args:
        log: the engine's event log.
        blobs: a blob store or its URL (``file:///dir``, ``s3://bucket/prefix``, ``memory://``,
            or ``"none"``); default ``DEERFLOW_BLOBS``, else a directory ``<file>.blobs`` beside
            a SQLite store file, else none.
        threshold: values above this many bytes go to the blob store
            (``DEERFLOW_PAYLOAD_THRESHOLD``, default 256 kB).
    """
    if isinstance(log, PayloadLog):
        return log
    store = blobs if isinstance(blobs, BlobStore) else _configured(log, blobs)
    if store is None:
        return log
    limit = threshold or int(os.environ.get("DEERFLOW_PAYLOAD_THRESHOLD") or DEFAULT_THRESHOLD)
    if log.max_value_bytes is not None and limit > log.max_value_bytes // 2:
        raise EventStoreError(
            f"payload threshold {limit} is too close to the {log.max_value_bytes} bytes "
            f"{log.url} takes in one record: use at most {log.max_value_bytes // 2}",
            retriable=False,
        )
    return PayloadLog(log, ClaimCheck(store, limit))


def _configured(log: EventLog, url: str | None) -> BlobStore | None:
    url = url or os.environ.get("DEERFLOW_BLOBS")
    if url == NO_BLOBS:
        return None
    if url:
        return open_blob_store(url)
    if isinstance(log, SqliteEventLog) and log.path.name != ":memory:":
        return LocalBlobStore(log.path.with_name(log.path.name + ".blobs"))
    return None


def within_limit(
    outcome: h.TaskCompleted | h.TaskFailed, limit: int | None, size: int | None = None
) -> h.TaskCompleted | h.TaskFailed:
    """``outcome``, or the task's failure when its record is larger than ``limit`` bytes.

    Appending such a record would fail on every retry (Kafka refuses records above its
    limit), leaving the run waiting for an outcome that never lands. ``size``: the record's,
    when the caller encoded it already.
    """
    if limit is None or not isinstance(outcome, h.TaskCompleted):
        return outcome
    if size is None:
        size = len(h.encode(outcome))
    if size <= limit:
        return outcome
    return _attempt_failed(
        outcome.run_id,
        outcome.task_id,
        outcome.attempt,
        f"task {outcome.task_id!r} of run {outcome.run_id!r} returned {size_text(size)}",
        limit,
        fallback=outcome.fallback,
    ).model_copy(update={"started_at": outcome.started_at, "worker": outcome.worker})


def check_fits(
    events: Sequence[h.HistoryEvent], messages: Sequence[Message], limit: int | None
) -> None:
    """Raise :class:`PayloadTooLarge` naming the run when one of ``messages`` (the records of
    ``events``, appended for a caller such as ``Engine.start``) is larger than ``limit``."""
    if limit is None:
        return
    for event, message in zip(events, messages, strict=True):
        if len(message.value) > limit:
            raise PayloadTooLarge(
                f"run {event.run_id!r}: {event.type} of {size_text(len(message.value))} is "
                + beyond_limit(limit)
            )


def refused(message: Message, limit: int, tasks_topic: str) -> h.HistoryEvent | None:
    """The failure that takes the place of ``message``, larger than the ``limit`` bytes the
    log takes in one record; ``None`` when it cannot be told whose message it is.

    The orchestrator's appends carry payloads too: a task message holds its upstream outputs
    (a fan-in of two 600 kB outputs is 1.2 MB), a run's end its output, a child run's request
    its input and its end report its output. Appending one the log refuses would fail on every
    retry, so the attempt, or the run, fails instead: without retries, as it would fail the
    same way.
    """
    size = len(message.value)
    if message.topic == tasks_topic:
        try:
            dispatch = TaskDispatch.model_validate_json(message.value)
        except ValidationError:
            return None
        return _attempt_failed(
            dispatch.run_id,
            dispatch.task_id,
            dispatch.attempt,
            f"task {dispatch.task_id!r} of run {dispatch.run_id!r} was given {size_text(size)} "
            "of input (its upstream outputs, the run's parameters and input)",
            limit,
            fallback=dispatch.fallback,
        )
    try:
        event = h.decode(message.value)
    except ValueError:
        return None
    parent = event.parent if isinstance(event, h.RunRequested) else None
    if parent is not None:  # a child run's request: the parent's attempt that asked fails
        return _attempt_failed(
            parent.run_id,
            parent.task_id,
            parent.attempt,
            f"task {parent.task_id!r} of run {parent.run_id!r} asked for a child run "
            f"{event.run_id!r} whose request is {size_text(size)}",
            limit,
        )
    if isinstance(event, h.TaskCompleted):  # a child run's output, reported to its parent
        return _attempt_failed(
            event.run_id,
            event.task_id,
            event.attempt,
            f"task {event.task_id!r} of run {event.run_id!r} was reported an output of "
            f"{size_text(size)}",
            limit,
        )
    if isinstance(event, h.RunCompleted):
        what = f"ended with an output of {size_text(size)}"
    else:
        what = f"decided a {event.type} event of {size_text(size)}"
    task_id = getattr(event, "task_id", None)
    return h.RunFailed(
        id=h.event_id(event.run_id, "too-large", event.id),
        run_id=event.run_id,
        error=f"run {event.run_id!r} {what}, " + beyond_limit(limit),
        failed_task=task_id if isinstance(task_id, str) else None,
    )


def _attempt_failed(
    run_id: str, task_id: str, attempt: int, what: str, limit: int, *, fallback: bool = False
) -> h.TaskFailed:
    return h.TaskFailed(
        id=h.event_id(run_id, task_id, attempt, "failed"),
        run_id=run_id,
        task_id=task_id,
        attempt=attempt,
        error=f"{what}, " + beyond_limit(limit),
        error_type="PayloadTooLarge",
        retriable=False,  # it would fail the same way
        fallback=fallback,
    )


def lost_input(record: Record) -> tuple[TaskDispatch, str] | None:
    """The attempt a task message was for and why it cannot be run, when the message's
    payload cannot be read (its blob is missing or corrupt); ``None`` for any other record."""
    error = payload_error(record)
    if error is None:
        return None
    try:
        dispatch = TaskDispatch.model_validate(lost_fields(record))
    except ValidationError:
        return None
    return dispatch, (
        f"task {dispatch.task_id!r} of run {dispatch.run_id!r} cannot be given its input: {error}"
    )
