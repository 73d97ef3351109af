"""The engine's questions about runs: wait for one, look at one, list and count them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

from deerflow.errors import RunNotFound
from deerflow.runtime._engineparts import EngineParts
from deerflow.runtime._results import RunResult, run_result
from deerflow.runtime._runrows import RunQuery
from deerflow.runtime._waiters import RunMoved

__all__ = ["SETTLE_WAIT", "RunQueries"]

SETTLE_WAIT = 2.0  # s Engine.wait gives a joining orchestrator to learn which runs it owns


class RunQueries(EngineParts):
    """``wait``, ``get_run``, ``list_runs`` and ``count_runs``."""

    async def wait(self, run_id: str, *, timeout: float | None = None) -> RunResult:
        """Wait until ``run_id`` ends; ``TimeoutError`` after ``timeout`` seconds.

        When this process's orchestrator owns the run, it answers as soon as the run's ending
        is durable, and the run index (which reads every history record again) is not needed.
        Otherwise, or if the run's partition moves meanwhile, the run index answers.
        """
        await self._start_engine()
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        orchestrator = self.orchestrator
        if orchestrator is not None and not orchestrator.settled.is_set():
            # Joining the group: which runs it owns is known once its partitions are rebuilt.
            # A join slower than this (a busy group) leaves the answer to the run index.
            limit = SETTLE_WAIT if timeout is None else min(timeout, SETTLE_WAIT)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(orchestrator.settled.wait(), limit)
        waiter = None if orchestrator is None else orchestrator.when_ended(run_id)
        if orchestrator is not None and waiter is not None:
            try:
                return await asyncio.wait_for(waiter, timeout)
            except TimeoutError:
                raise TimeoutError(f"run {run_id} did not finish within {timeout}s") from None
            except RunMoved:
                pass  # another member decides it now: the run index answers
            finally:
                orchestrator.forget_waiter(run_id, waiter)
        left = None if deadline is None else max(0.0, deadline - loop.time())
        state = await self.index.wait(run_id, lambda s: s.terminal, left)
        if state is None:
            raise TimeoutError(f"run {run_id} did not finish within {timeout}s")
        return self._result(state)

    async def get_run(self, run_id: str) -> RunResult:
        """The run as its history tells it now; :class:`RunNotFound` if unknown.

        Answered from the run index: the run's row, and its own history folded (never the
        whole history's).
        """
        await self._start_engine()
        await self.index.sync()
        state = await self.index.state(run_id)
        if state is None:
            raise RunNotFound(f"no run {run_id!r} in {self.log.url}")
        return self._result(state)

    async def list_runs(
        self,
        *,
        workflow: str | None = None,
        status: str | None = None,
        state: str | None = None,
        limit: int | None = None,
        since: float | None = None,
        until: float | None = None,
        trigger: str | None = None,
        parent: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        after: str | None = None,
    ) -> list[RunResult]:
        """Runs, newest first, from the run index (summaries: ``tasks`` is empty).

        Args:
            workflow: the workflow's name.
            status: running, parked, completed, failed, cancelled, ...
            state: a state-machine instance's current state.
            limit: at most this many runs (all by default).
            since, until: bounds of the start time, epoch seconds.
            trigger: a trigger's kind or name, ``manual`` or ``parent``.
            parent: runs started as sub-workflows by this run.
            attributes: search attributes (``context.set_search_attributes``) with these values.
            after: the id of the last run of the previous page: the next page.

        ``get_run`` gives a run's tasks.
        """
        await self._start_engine()
        await self.index.sync()
        query = RunQuery(
            workflow=workflow,
            status=status,
            trigger=trigger,
            parent=parent,
            since=since,
            until=until,
            state=state,
            attributes=dict(attributes or {}),
            after=after,
            limit=limit,
        )
        return [
            run_result(s).model_copy(update={"tasks": {}})
            for s in await self.index.summaries(query)
        ]

    async def count_runs(self, **where: Any) -> dict[str, int]:
        """Runs by status, among those :meth:`list_runs` with the same filters would list."""
        await self._start_engine()
        await self.index.sync()
        return await self.index.counts(RunQuery(**where))
