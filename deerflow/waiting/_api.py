"""The waiting decorators of :class:`deerflow.Workflow` (a mixin): sleep, wait_for_signal and
wait_for_object."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, Literal, TypeVar

from deerflow.core import NodeKind, RetryPolicy, TaskDef, WorkflowDef
from deerflow.errors import DefinitionError
from deerflow.waiting._duration import Duration, seconds
from deerflow.waiting._kinds import SLEEP, WAIT_FOR_SIGNAL, WaitContext
from deerflow.waiting._s3 import CHECKS, WAIT_FOR_OBJECT

F = TypeVar("F", bound=Callable[..., Any])


def _passthrough(fn: F) -> F:
    return fn


class WaitingMixin(WorkflowDef):
    """Nodes that wait without holding a worker: sleeps, signals and S3 objects.

    Each is added at once, so the decorator may stand above a task's own decorator or be
    called on its own: ``wf.sleep(id="cool_down", duration="10m", depends_on=["load"])``.
    """

    def _add_wait(
        self,
        id: str,
        kind: NodeKind,
        options: Mapping[str, Any],
        depends_on: Iterable[str],
        retry: RetryPolicy | None = None,
    ) -> Callable[[F], F]:
        if isinstance(depends_on, str):
            raise DefinitionError(
                f"workflow {self.name!r}, task {id!r}: depends_on must be a list of task ids"
            )
        self.add_task(
            TaskDef(
                id=id,
                fn=None,
                depends_on=tuple(depends_on),
                kind=kind,
                options=options,
                retry=retry or RetryPolicy(),
            )
        )
        return _passthrough

    def sleep(
        self,
        id: str,
        *,
        duration: Duration | None = None,
        until: Callable[[WaitContext], datetime] | None = None,
        depends_on: Iterable[str] = (),
    ) -> Callable[[F], F]:
        """A durable sleep: the node completes (output ``None``) once the time has come.

        No worker slot is held meanwhile; the wake-up is a timer in the run's history, so a
        restart or another process taking the run over neither loses nor repeats it.

        Args:
            id: the node's task id.
            duration: how long: seconds, a ``timedelta`` or ``"30s"``, ``"10m"``, ``"1h30m"``.
            until: instead, a function of the context (``run_id``, ``params``, ``input``,
                ``tasks[id].output`` of the upstream tasks) returning the ``datetime`` to
                wake up at (a naive one is UTC); called once, when the node is reached.
            depends_on: tasks that must complete first.
        """
        where = f"workflow {self.name!r}, task {id!r}"
        if (duration is None) == (until is None):
            raise DefinitionError(f"{where}: sleep takes either duration= or until=")
        if until is not None and not callable(until):
            raise DefinitionError(f"{where}: until= must be a function of the context")
        length = None if duration is None else seconds(where, "duration", duration)
        return self._add_wait(id, SLEEP, {"duration": length, "until": until}, depends_on)

    def wait_for_signal(
        self,
        id: str,
        *,
        name: str,
        timeout: Duration | None = None,
        on_timeout: Literal["none", "fail"] = "none",
        depends_on: Iterable[str] = (),
    ) -> Callable[[F], F]:
        """Wait for the signal ``name`` sent to the run; its data is the node's output.

        Signals are sent with ``engine.signal(run_id, name, data)``, ``deerflow runs signal``,
        ``POST /api/runs/{run_id}/signals/{name}`` or the dashboard. One sent before the node
        is reached is kept for it; each signal is taken by one node, once.

        Args:
            id: the node's task id.
            name: the signal's name.
            timeout: at most this long (seconds, a ``timedelta`` or ``"1h"``); ``None``: for ever.
            on_timeout: ``"none"``: the output is ``None`` after the timeout; ``"fail"``: the
                node fails (not retried; its run fails as for any failed task).
            depends_on: tasks that must complete first.
        """
        where = f"workflow {self.name!r}, task {id!r}"
        if not isinstance(name, str) or not name:
            raise DefinitionError(f"{where}: name= must be a non-empty signal name")
        if on_timeout not in ("none", "fail"):
            raise DefinitionError(f"{where}: on_timeout must be 'none' or 'fail'")
        limit = None if timeout is None else seconds(where, "timeout", timeout)
        options = {"name": name, "timeout": limit, "on_timeout": on_timeout}
        return self._add_wait(id, WAIT_FOR_SIGNAL, options, depends_on)

    def wait_for_object(
        self,
        id: str,
        *,
        bucket: str,
        key: str,
        timeout: Duration | None = None,
        poke: Duration = "30s",
        on_timeout: Literal["none", "fail"] = "none",
        endpoint_url: str | None = None,
        region: str | None = None,
        depends_on: Iterable[str] = (),
    ) -> Callable[[F], F]:
        """Wait until the S3 object ``key`` is in ``bucket``; its metadata is the output.

        An S3 key sensor in reschedule mode: every ``poke`` a short attempt on a worker
        checks (``HEAD``), and between checks the node holds no slot (each check is an
        attempt of the node in the run's history). The output is ``{"bucket", "key",
        "size", "etag", "last_modified"}``.

        Args:
            id: the node's task id.
            bucket: the bucket.
            key: the object's key; ``{params.NAME}`` is filled from the run's params
                (``"day={params.day}/_SUCCESS"``).
            timeout: at most this long (seconds, a ``timedelta`` or ``"6h"``); ``None``: for ever.
            poke: how long between two checks (default ``"30s"``).
            on_timeout: ``"none"``: the output is ``None`` after the timeout; ``"fail"``: the
                node fails.
            endpoint_url, region: another S3 endpoint or region than boto3's configuration.
            depends_on: tasks that must complete first.
        """
        where = f"workflow {self.name!r}, task {id!r}"
        for name, text in (("bucket", bucket), ("key", key)):
            if not isinstance(text, str) or not text:
                raise DefinitionError(f"{where}: {name}= must be a non-empty string")
        if on_timeout not in ("none", "fail"):
            raise DefinitionError(f"{where}: on_timeout must be 'none' or 'fail'")
        every = seconds(where, "poke", poke)
        options = {
            "bucket": bucket,
            "key": key,
            "timeout": None if timeout is None else seconds(where, "timeout", timeout),
            "poke": every,
            "on_timeout": on_timeout,
            "endpoint_url": endpoint_url,
            "region": region,
        }
        # Checks are retries spaced by ``poke``; the deadline ends them, not their number.
        checks = RetryPolicy(retries=CHECKS, retry_delay=every, backoff=1.0, max_retry_delay=every)
        return self._add_wait(id, WAIT_FOR_OBJECT, options, depends_on, checks)


__all__ = ["WaitingMixin"]
