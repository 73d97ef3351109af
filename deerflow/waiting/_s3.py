"""An S3 key sensor in reschedule mode: ``wf.wait_for_object(bucket=..., key=...)``.

Each check is a short attempt on a worker (a ``HEAD`` of the object); between two checks the
node holds no slot, its next check being a durable retry timer ``poke`` seconds later. The
first attempt records what the node waits for and its deadline
(:class:`~deerflow.waiting._fold.WaitArmed`); each check reads the deadline from there, so a
restart or a takeover keeps it. The node's output is the object's ``bucket``, ``key``,
``size``, ``etag`` and ``last_modified`` (ISO 8601), or ``None`` after the timeout
(``on_timeout="fail"``: the node fails).

Endpoint, region and credentials come from boto3's usual configuration (environment,
profiles, ``AWS_ENDPOINT_URL``) unless the node names ``endpoint_url=`` / ``region=``.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

from deerflow.core import KindOptions, NodeKind, RunState, TaskDef, WorkflowDef
from deerflow.core import history as h
from deerflow.errors import MissingDependency, NonRetryableError, TaskError
from deerflow.waiting._fold import WAIT_FOLD, WaitArmed

#: a sensor's retry budget: its deadline, not a count, ends its checks
CHECKS = 10**9


class ObjectNotYetPresent(TaskError):
    """The object a sensor waits for is not there yet: checked again after ``poke``."""


class ObjectOptions(KindOptions):
    """An object sensor's options (see :meth:`WaitingMixin.wait_for_object`)."""

    bucket: str
    key: str
    timeout: float | None = None
    poke: float = 30.0
    on_timeout: Literal["none", "fail"] = "none"
    endpoint_url: str | None = None
    region: str | None = None


class _Params:
    """``{params.day}`` in a key template: the run's params by attribute."""

    def __init__(self, params: Mapping[str, Any]) -> None:
        self._params = params

    def __getattr__(self, name: str) -> Any:
        try:
            return self._params[name]
        except KeyError:
            raise KeyError(f"params.{name}") from None


def object_key(template: str, params: Mapping[str, Any]) -> str:
    """``template`` with ``{params.NAME}`` filled from the run's ``params``."""
    return template.format(params=_Params(params))


@functools.lru_cache(maxsize=8)  # one client per endpoint and region a process names
def _client(endpoint_url: str | None, region: str | None) -> Any:
    try:
        import boto3
    except ImportError as exc:
        raise MissingDependency("wait_for_object needs boto3: pip install 'deerflow[s3]'") from exc
    options = {"endpoint_url": endpoint_url} if endpoint_url else {}
    return boto3.session.Session(region_name=region).client("s3", **options)


def _head(opts: ObjectOptions, key: str) -> dict[str, Any] | None:
    """The object's metadata, or ``None`` when it is not there (yet)."""
    client = _client(opts.endpoint_url, opts.region)
    try:
        found = client.head_object(Bucket=opts.bucket, Key=key)
    except client.exceptions.ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
    return {
        "bucket": opts.bucket,
        "key": key,
        "size": int(found["ContentLength"]),
        "etag": str(found["ETag"]).strip('"'),
        "last_modified": found["LastModified"].isoformat(),
    }


def check(opts: ObjectOptions, context: Any) -> dict[str, Any] | None:
    """One check: the object's metadata; else ``None`` or a failure past the deadline; else
    :class:`ObjectNotYetPresent`, retried at the next poke."""
    try:
        key = object_key(opts.key, context.params)
    except (KeyError, IndexError, AttributeError, ValueError) as exc:
        raise NonRetryableError(f"key {opts.key!r}: cannot fill in {exc}") from None
    found = _head(opts, key)
    if found is not None:
        return found
    deadline = context.extra.get("deadline")
    now = time.time()
    where = f"s3://{opts.bucket}/{key}"
    if deadline is not None and now >= deadline:
        if opts.on_timeout == "fail":
            assert opts.timeout is not None
            raise NonRetryableError(f"no object {where} within {opts.timeout:g}s")
        return None
    delay = opts.poke if deadline is None else max(0.01, min(opts.poke, deadline - now))
    raise ObjectNotYetPresent(f"{where} is not there yet", next_retry_delay=delay)


class ObjectKind(NodeKind):
    """Checks on a worker whether an S3 object exists; between checks, holds no slot."""

    name = "wait_for_object"
    label = "wait for object"
    css_class = "wait"
    options_model = ObjectOptions
    folds = (WAIT_FOLD,)

    def on_scheduled(
        self, task: TaskDef, state: RunState, attempt: int, now: float
    ) -> list[h.HistoryEvent]:
        """The first check of a series records what the node waits for, and until when."""
        known = state.tasks.get(task.id)
        if known is not None and attempt != known.attempt_base + 1:
            return []
        opts = self.options(task, ObjectOptions)
        try:
            key = object_key(opts.key, state.params)
        except (KeyError, IndexError, AttributeError, ValueError):
            key = opts.key  # the check fails, saying why
        return [
            WaitArmed(
                id=h.event_id(state.run_id, task.id, attempt, "wait-armed"),
                run_id=state.run_id,
                ts=now,
                task_id=task.id,
                attempt=attempt,
                waits_for=f"object s3://{opts.bucket}/{key}",
                deadline=None if opts.timeout is None else now + opts.timeout,
            )
        ]

    def inputs(
        self, wf: WorkflowDef, state: RunState, task: TaskDef
    ) -> tuple[Iterable[str], dict[str, Any]]:
        """Its upstream tasks, and the deadline its first check recorded."""
        wait = state.extensions.get(WAIT_FOLD.key, {}).get("waits", {}).get(task.id, {})
        return wf.ancestors(task.id), {"deadline": wait.get("deadline")}

    def body(self, task: TaskDef) -> Callable[..., Any]:
        """One check of the object (a thread: boto3 blocks)."""
        return functools.partial(check, self.options(task, ObjectOptions))


WAIT_FOR_OBJECT = ObjectKind()
