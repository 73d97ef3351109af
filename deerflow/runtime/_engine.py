"""The engine: one process's orchestrator, worker and run index on one event log."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import Awaitable, Iterable, Mapping
from types import TracebackType
from typing import Any, Self, overload

import deerflow._codec as _codec
from deerflow.core import history as h
from deerflow.core.definition import WorkflowDef
from deerflow.core.state import RunState, request_takers
from deerflow.core.topics import Topics
from deerflow.errors import (
    DeerflowError,
    InvalidSignal,
    RunEnded,
    RunNotFound,
    TransitionNotAllowed,
)
from deerflow.log import open_log
from deerflow.log.base import EventLog
from deerflow.payloads import BlobStore
from deerflow.runtime import _collector
from deerflow.runtime._archiver import Archiver
from deerflow.runtime._archivestore import ArchiveStore, open_archive, parse_retention
from deerflow.runtime._hotset import held_runs_setting
from deerflow.runtime._orchestrator import SNAPSHOT_EVERY, Orchestrator
from deerflow.runtime._payloads import check_fits, payload_log
from deerflow.runtime._registry import WorkflowRegistry
from deerflow.runtime._results import RunResult, run_result
from deerflow.runtime._runindex import RunIndex
from deerflow.runtime._runrows import RunQuery
from deerflow.runtime._settings import whole_number
from deerflow.runtime._tombstones import DEDUPE_LIMIT, DEDUPE_WINDOW
from deerflow.runtime._waiters import RunMoved
from deerflow.runtime._worker import Worker, aging_setting, prefetch_setting
from deerflow.runtime._worker_ready import AGING
from deerflow.runtime.hooks import HistoryFolded, HookChain
from deerflow.runtime.plugins import (
    Plugin,
    Service,
    adopt_folds,
    check_options,
    default_plugins,
)

DEFAULT_STORE = "sqlite:///deerflow.db"
#: How long after it ended a run is archived, when an archive is configured.
DEFAULT_RETENTION = "30d"
#: the longest signal name or id accepted (kept in the run's state until taken)
SIGNAL_NAME_LIMIT = 200
#: the largest signal data accepted, encoded (kept in the run's state until taken)
SIGNAL_DATA_LIMIT = 64 * 1024
SETTLE_WAIT = 2.0  # s Engine.wait gives a joining orchestrator to learn which runs it owns


def snapshot_setting(given: int | None) -> int:
    """``snapshot_every`` as given, else ``DEERFLOW_SNAPSHOT_EVERY``, else the default."""
    given = whole_number(given, "DEERFLOW_SNAPSHOT_EVERY", SNAPSHOT_EVERY, "records")
    if given < 0:
        raise DeerflowError(f"snapshot_every must be 0 (none) or more, not {given}")
    return given


def default_store() -> str:
    """``DEERFLOW_STORE``, else an SQLite file ``deerflow.db`` in the working directory."""
    return os.environ.get("DEERFLOW_STORE") or DEFAULT_STORE


def new_run_id() -> str:
    """A fresh random run id."""
    return uuid.uuid4().hex


class RunHandle:
    """A started run: await its result, or look at it."""

    def __init__(self, engine: Engine, run_id: str, workflow: str) -> None:
        self._engine = engine
        self.run_id = run_id
        self.workflow = workflow

    async def result(self, timeout: float | None = None) -> RunResult:
        """Wait until the run ends and return it; ``TimeoutError`` if it does not in time."""
        return await self._engine.wait(self.run_id, timeout=timeout)

    async def status(self) -> RunResult:
        """The run as it is now."""
        return await self._engine.get_run(self.run_id)

    async def signal(self, name: str, data: Any = None, *, signal_id: str | None = None) -> str:
        """Send the signal ``name`` to the run (see :meth:`Engine.signal`); its id."""
        return await self._engine.signal(self.run_id, name, data, signal_id=signal_id)

    async def cancel(self, reason: str = "cancelled") -> None:
        """Ask the engine to cancel the run."""
        await self._engine.cancel(self.run_id, reason=reason)

    def __repr__(self) -> str:
        return f"RunHandle(run_id={self.run_id!r}, workflow={self.workflow!r})"


class Engine:
    """Runs workflows on an event log.

    ``await engine.start()`` (or ``async with``) opens the store and starts this process's
    orchestrator and worker; ``await engine.start(workflow, params=..., input=...)`` starts a run.

    Args:
        store: an event-log URL (``memory://``, ``sqlite:///path.db``, ``kafka://host:9092``) or
            an :class:`EventLog`; default :func:`default_store`.
        workflows: definitions this process can run.
        prefix: topic-name prefix (``DEERFLOW_PREFIX``, default ``deerflow``).
        orchestrate: own history partitions in this process.
        work: run tasks in this process.
        concurrency: task attempts run at once by this process's worker.
        prefetch: queued task attempts this process's worker reads ahead of its free slots at
            most (default: ``concurrency``, at least 16); as a slot frees, the one of highest
            priority among them starts (``@wf.task(priority=...)``, else the run's).
        priority_aging: seconds of queueing one point of a task's priority is worth (60): an
            attempt queued long enough starts before newer ones of higher priority.
        partitions: partitions for topics deerflow creates (8 on Kafka, 4 elsewhere).
        services: start the services of the adopted plugins (event handlers, ...).
        eager: let this process's orchestrator hand attempts straight to its own worker
            when slots are free (a chain's next step, a retry, this worker's share of a
            fan-out), skipping the queue's round trip; ``False`` sends every attempt
            through the queue.
        plugins: plugins to adopt besides those the workflows carry (see
            :mod:`deerflow.runtime.plugins`): their hooks and services.
        index: the run index's SQLite file (``DEERFLOW_INDEX``; default: the SQLite store
            file itself, in memory for ``memory://``, ``.deerflow/runindex-*.db`` on Kafka).
        snapshot_every: history records folded in a partition between two snapshots of it
            (``DEERFLOW_SNAPSHOT_EVERY``, default 5000; ``0``: no snapshots, a new owner then
            folds every partition from offset 0).
        dedupe_window: seconds an ended run's tombstone is kept after its end: within it a
            duplicate request of the run is ignored, after it the run id starts again.
        dedupe_limit: tombstones kept per history partition at most (the oldest go first).
        max_held_runs: run states the orchestrator holds in memory at most
            (``DEERFLOW_MAX_HELD_RUNS``, default 10,000); past it, the least recently used
            runs with nothing in flight (waiting on a timer, an event, a signal, a child or a
            flow-control gate) are evicted to a temporary file and loaded back by the next
            record that concerns them. :class:`DeerflowError` unless a whole number ≥ 1.
        blobs: where payloads above ``payload_threshold`` bytes go, the log keeping a
            reference (see :func:`deerflow.runtime._payloads.payload_log`): a
            :class:`~deerflow.payloads.BlobStore` or its URL (``s3://bucket/prefix``,
            ``file:///dir``, ``"none"``); default ``DEERFLOW_BLOBS``, else a directory beside a
            SQLite store file.
        payload_threshold: bytes above which a payload goes to the blob store (256 kB).
        archive: where ended runs are archived (``DEERFLOW_ARCHIVE``): ``file:///directory``
            or ``s3://bucket/prefix``; none by default. An engine that orchestrates then
            archives the runs ended more than ``retention`` ago and, on SQLite, deletes their
            records from the store (see docs/operations/scaling.md); with a blob store, it
            deletes their blobs once no record refers to them (docs/reference/payloads.md).
        retention: ``30d``, ``12h``, ... or seconds (``DEERFLOW_RETENTION``, default ``30d``).
        options: settings read by those services; each must be declared by a plugin class
            (:attr:`Plugin.options <deerflow.runtime.plugins.Plugin.options>`), else
            :class:`TypeError` names it.
    """

    def __init__(
        self,
        store: str | EventLog | None = None,
        workflows: Iterable[WorkflowDef] = (),
        *,
        prefix: str | None = None,
        orchestrate: bool = True,
        work: bool = True,
        concurrency: int = 16,
        prefetch: int | None = None,
        priority_aging: float = AGING,
        partitions: int | None = None,
        services: bool = True,
        eager: bool = True,
        plugins: Iterable[Plugin] = (),
        index: str | None = None,
        snapshot_every: int | None = None,
        dedupe_window: float = DEDUPE_WINDOW,
        dedupe_limit: int = DEDUPE_LIMIT,
        max_held_runs: int | None = None,
        blobs: str | BlobStore | None = None,
        payload_threshold: int | None = None,
        archive: str | ArchiveStore | None = None,
        retention: str | float | None = None,
        **options: Any,
    ) -> None:
        check_options("Engine", options)  # before anything is opened: a typo is not a setting
        held_runs = held_runs_setting(max_held_runs)  # in any process: a bad one is an error
        prefetch = prefetch_setting(prefetch, concurrency)
        priority_aging = aging_setting(priority_aging)
        self.options = options
        self._run_services = services and work
        self.services: list[Service] = []
        self.plugins: list[Plugin] = []
        self.hooks = HookChain()
        log_ = store if isinstance(store, EventLog) else open_log(store or default_store())
        self.log = payload_log(log_, blobs, payload_threshold)
        self.registry = WorkflowRegistry(workflows)
        self.topics = Topics.from_env(prefix)
        self._partitions = partitions or (8 if self.log.url.startswith("kafka") else 4)
        self.index = RunIndex(self.log, self.topics, path=index)
        self.orchestrator = (
            Orchestrator(
                self.log,
                self.registry,
                self.topics,
                snapshot_every=snapshot_setting(snapshot_every),
                dedupe_window=dedupe_window,
                dedupe_limit=dedupe_limit,
                max_held_runs=held_runs,
            )
            if orchestrate
            else None
        )
        self.worker = (
            Worker(
                self.log,
                self.registry,
                self.topics,
                concurrency=concurrency,
                prefetch=prefetch,
                priority_aging=priority_aging,
            )
            if work
            else None
        )
        if self.worker is not None and self.orchestrator is not None:
            self.worker.on_outcome = self.orchestrator.observe
            self.worker.outcome_known = self.orchestrator.outcome_known
            if eager:
                self.orchestrator.local_worker = self.worker
        self.archiver: Archiver | None = None
        """The archiver of ended runs, when an archive is configured and this orchestrates."""
        archive = archive or os.environ.get("DEERFLOW_ARCHIVE") or None
        if archive is not None:
            self.index.archive = (
                archive if isinstance(archive, ArchiveStore) else open_archive(archive)
            )
            if retention is None:
                retention = os.environ.get("DEERFLOW_RETENTION") or DEFAULT_RETENTION
            age = parse_retention(retention)  # a bad one is an error in any process
            if self.orchestrator is not None:
                self.archiver = Archiver(
                    self.index,
                    self.log,
                    self.index.archive,
                    age,
                    partitions=self.orchestrator.owned_partitions,
                )
        self._started = False
        self._holds_collector = False  # whether this engine made the collector slower
        self._lock = asyncio.Lock()
        self._late: set[asyncio.Task[None]] = set()
        self._unstarted: list[Plugin] = []  # adopted, services not started yet
        self._adopt(default_plugins())
        self._adopt(plugins)
        for wf in self.registry:
            self._adopt(wf.plugins)
        self.index.add_listener(self._history_folded)  # hooks see the index's folds

    def _history_folded(self, state: RunState, event: h.HistoryEvent) -> None:
        hooks = self.hooks
        if hooks.follows_history:
            hooks.on_history_event(HistoryFolded(state, event))

    # -- plugins -----------------------------------------------------------------------------

    def _adopt(self, plugins: Iterable[Any]) -> bool:
        """Adopt the plugins not adopted yet: their hooks at once, their services at the next
        :meth:`_start_pending`. Returns whether there was a new one."""
        new = False
        for plugin in plugins:
            if not isinstance(plugin, Plugin):
                raise DeerflowError(f"{plugin!r} is not a deerflow.runtime.Plugin")
            if any(plugin is p for p in self.plugins):
                continue
            adopt_folds(plugin)  # its history events fold before anything reads them
            self.plugins.append(plugin)
            self._unstarted.append(plugin)
            self.hooks = HookChain([hook for p in self.plugins for hook in p.hooks()])
            if self.worker is not None:
                self.worker.hooks = self.hooks
            new = True
        return new

    def _take_pending(self) -> list[Service]:
        """The services of the plugins adopted since the last call (none when not serving)."""
        plugins, self._unstarted = self._unstarted, []
        if not self._run_services:
            return []
        return [service for plugin in plugins for service in plugin.services(self)]

    async def _start_pending(self) -> None:
        """Start the services of the plugins adopted since the last call, concurrently."""
        await self._start_all(self._take_pending())

    # -- lifecycle ---------------------------------------------------------------------------

    @overload
    async def start(self) -> None: ...

    @overload
    async def start(
        self,
        workflow: WorkflowDef | str,
        *,
        params: Mapping[str, Any] | None = None,
        input: Any = None,
        run_id: str | None = None,
        trigger: Mapping[str, Any] | None = None,
        correlation_id: str | None = None,
        priority: int = 0,
    ) -> RunHandle: ...

    async def start(
        self,
        workflow: WorkflowDef | str | None = None,
        *,
        params: Mapping[str, Any] | None = None,
        input: Any = None,
        run_id: str | None = None,
        trigger: Mapping[str, Any] | None = None,
        correlation_id: str | None = None,
        priority: int = 0,
    ) -> RunHandle | None:
        """Start the engine (no arguments) or start a run of ``workflow`` (see
        :meth:`start_run`)."""
        if workflow is None:
            await self._start_engine()
            return None
        return await self.start_run(
            workflow,
            params=params,
            input=input,
            run_id=run_id,
            trigger=trigger,
            correlation_id=correlation_id,
            priority=priority,
        )

    async def open(self) -> None:
        """Open the store and create deerflow's topics, without joining any group; idempotent.

        What :meth:`start` does first; a server can listen (and say it is starting) from here.
        """
        await self.log.start()
        # Histories, domain events and dead letters are the record: never expire them.
        # Task messages are consumed within seconds: the broker's retention applies.
        for topic in (self.topics.history, self.topics.events, self.topics.dlq):
            await self.log.ensure_topic(topic, self._partitions, keep_forever=True)
        await self.log.ensure_topic(self.topics.tasks, self._partitions)

    async def _start_engine(self, extra: Iterable[Service] = ()) -> None:
        extra = list(extra)
        if self._started and not extra:
            # Every start_run, append_history and wait comes here: once started, no lock and
            # no empty gather (~8 % of the CPU of 10k one-step runs started at once).
            return
        async with self._lock:
            if self._started:
                await self._start_all(extra)
                return
            await self.open()
            # Group joins take seconds each on Kafka: join every group at once. The worker
            # runs nothing until the services are up: a task body may publish through one.
            joins = [] if self.orchestrator is None else [self.orchestrator.start()]
            if self.worker is not None:
                joins.append(self.worker.start(held=True))
            own = [] if self.archiver is None else [self.archiver]
            await self._start_all([*own, *self._take_pending(), *extra], *joins)
            if self.worker is not None:
                self.worker.release()
            self._started = True
            if not self._holds_collector:
                self._holds_collector = True
                _collector.hold()

    async def _start_all(self, services: list[Service], *joins: Awaitable[None]) -> None:
        """Start ``services`` (and ``joins``) concurrently; if one fails, stop them all."""
        try:
            results = await asyncio.gather(
                *joins, *(s.start() for s in services), return_exceptions=True
            )
        except asyncio.CancelledError:
            results = [asyncio.CancelledError()]
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            for service in reversed(services):
                with contextlib.suppress(Exception):
                    await service.stop()
            raise failed[0]
        self.services += services

    async def add_service(self, service: Service) -> Service:
        """Start ``service`` now and stop it with the engine."""
        await self.add_services([service])
        return service

    async def add_services(self, services: Iterable[Service]) -> None:
        """Start ``services`` concurrently and stop them with the engine (last added first).

        If the engine is not started yet it starts too, its own group joins alongside: on
        Kafka every join takes seconds, so joining them all at once saves those seconds per
        group. If one fails to start, the others are stopped again and its error raised.
        """
        await self._start_engine(services)

    async def stop(self) -> None:
        """Drain the worker, leave the groups and close the store; idempotent.

        The worker drains first: a task body finishing meanwhile may still publish through a
        service.
        """
        if self._holds_collector:
            self._holds_collector = False
            _collector.release()
        if self.worker is not None:
            await self.worker.stop()
        if self._late:
            await asyncio.gather(*self._late, return_exceptions=True)
        while self.services:
            await self.services.pop().stop()
        if self.orchestrator is not None:
            await self.orchestrator.stop()
        await self.index.stop()
        await self.log.stop()
        self._started = False

    async def __aenter__(self) -> Self:
        await self._start_engine()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def register(self, workflow: WorkflowDef) -> WorkflowDef:
        """Make ``workflow`` runnable by this process (and adopt the plugins it carries)."""
        self.registry.add(workflow)
        self._adopt_late(workflow.plugins)
        return workflow

    def add_plugin(self, plugin: Plugin) -> None:
        """Adopt ``plugin`` now (again: nothing): its hooks at once, its services with the
        engine's (soon, if the engine runs already)."""
        self._adopt_late([plugin])

    def _adopt_late(self, plugins: Iterable[Plugin]) -> None:
        if self._adopt(plugins) and self._started:
            try:  # the services start on the engine's loop, soon (else at the next start_run)
                task = asyncio.get_running_loop().create_task(self._start_pending())
            except RuntimeError:
                return
            self._late.add(task)
            task.add_done_callback(self._late.discard)

    # -- runs -------------------------------------------------------------------------------

    async def start_run(
        self,
        workflow: WorkflowDef | str,
        *,
        params: Mapping[str, Any] | None = None,
        input: Any = None,
        run_id: str | None = None,
        trigger: Mapping[str, Any] | None = None,
        correlation_id: str | None = None,
        parent: h.ParentRef | None = None,
        priority: int = 0,
    ) -> RunHandle:
        """Durably request a run and return its handle.

        A ``run_id`` that already exists returns the existing run's handle: the duplicate
        request is ignored by the history fold (idempotent start), or, for an archived run,
        not appended at all. ``priority``: where runs of the workflow queue (flow control),
        higher starts first (a run waiting long enough still passes newer ones of higher
        priority).
        """
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise TypeError(f"priority must be an int, not {type(priority).__name__}")
        await self._start_engine()
        wf = self._resolve(workflow)
        refusal = wf.start_refusal()
        if refusal is not None:
            raise DeerflowError(refusal)
        self._adopt(wf.plugins)
        await self._start_pending()
        rid = run_id or new_run_id()
        if run_id is not None and await self.index.archived(run_id) is not None:
            # its history left the log, so no fold would know the request for a duplicate
            return RunHandle(self, rid, wf.name)
        for value in (params, input, trigger):
            # TypeError now, rather than a run written that no reader can parse back.
            _codec.bounded_json_value(value)
        event = h.RunRequested(
            id=h.event_id(rid, "requested"),
            run_id=rid,
            workflow=wf.name,
            version=wf.version,
            fingerprint=wf.fingerprint(),
            shape=wf.shape(),
            params=dict(params or {}),
            input=input,
            trigger=dict(trigger) if trigger is not None else None,
            parent=parent,
            correlation_id=correlation_id,
            priority=priority,
        )
        await self.append_history([event, *wf.request_events(event)])
        return RunHandle(self, rid, wf.name)

    def _resolve(self, workflow: WorkflowDef | str) -> WorkflowDef:
        if isinstance(workflow, WorkflowDef):
            return self.registry.add(workflow)
        wf = self.registry.get(workflow)
        if wf is None:
            known = ", ".join(sorted(w.name for w in self.registry)) or "none"
            raise DeerflowError(f"unknown workflow {workflow!r} (loaded: {known})")
        return wf

    async def append_history(self, events: Iterable[h.HistoryEvent]) -> None:
        """Append events to their runs' histories (durable when this returns)."""
        await self._start_engine()
        events = list(events)
        messages = [h.message(self.topics.history, e) for e in events]
        check_fits(events, messages, self.log.max_value_bytes)  # a clear error, not the broker's
        await self.log.append(messages)
        if self.orchestrator is not None:
            self.orchestrator.observe(events)  # an owned run moves without a broker round trip

    def handle(self, run_id: str) -> RunHandle:
        """A handle for an existing run id."""
        state = self.index.runs.get(run_id)
        return RunHandle(self, run_id, state.workflow if state else "")

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

    async def send(
        self,
        instance_id: str,
        transition: str,
        payload: Any = None,
        *,
        request_id: str | None = None,
        wait: bool = True,
        timeout: float | None = 60.0,
    ) -> RunResult:
        """Ask state-machine instance ``instance_id`` to take ``transition``.

        Requests on one instance are applied one at a time, in order. Raises
        :class:`TransitionNotAllowed` (nothing changes) when the transition is unknown, not
        allowed in the instance's state, or refused by its guard; :class:`TaskError` when its
        handler failed for good (the instance stays in its source state). ``request_id`` makes
        a retried request idempotent. With ``wait=False`` it returns once the request is
        durable.
        """
        current = await self.get_run(instance_id)
        wf = self.registry.get(current.workflow, current.version)
        if current.state is None and (wf is None or not wf.takes_requests()):
            raise DeerflowError(f"run {instance_id} is not a state-machine instance")
        refusal = "the instance has ended" if current.done else None
        if refusal is None and wf is not None and wf.takes_requests():
            refusal = wf.request_refusal(transition, current.state)
        # Without the definition here (a CLI), the instance's owner checks and may refuse.
        if refusal is not None:
            raise TransitionNotAllowed(f"{instance_id}: {refusal}")
        rid = request_id or uuid.uuid4().hex[:16]
        # The feature whose runs take requests defines their events and answers (its fold
        # extension, registered when deerflow is imported).
        taker, event = next(
            (
                (ext, ev)
                for ext in request_takers()
                if (ev := ext.request(instance_id, rid, transition, payload)) is not None
            ),
            (None, None),
        )
        if taker is None or event is None:
            raise DeerflowError("state machines are not loaded in this process")
        await self.append_history([event])
        if not wait:
            return current
        state = await self.index.wait(
            instance_id, lambda s: s.terminal or taker.answered(s, rid), timeout
        )
        if state is None:
            raise TimeoutError(
                f"transition {transition!r} of {instance_id} not applied in {timeout}s"
            )
        taker.answer(state, rid, transition)
        return self._result(state)

    async def cancel(self, run_id: str, *, reason: str = "cancelled") -> None:
        """Ask for ``run_id`` to be cancelled: pending tasks are skipped, the run ends cancelled."""
        await self.get_run(run_id)
        await self.append_history(
            [
                h.RunCancelRequested(
                    id=h.event_id(run_id, "cancel-requested"), run_id=run_id, reason=reason
                )
            ]
        )

    async def signal(
        self, run_id: str, name: str, data: Any = None, *, signal_id: str | None = None
    ) -> str:
        """Send the signal ``name`` with JSON ``data`` to ``run_id``; return the signal's id.

        A node of the run waiting for ``name`` (``wait_for_signal``) takes it as its output;
        one sent before such a node is reached is kept for it. Each signal is taken once:
        sending again with the same ``signal_id`` (a retried request) delivers nothing more.
        Raises :class:`RunNotFound` for an unknown run, :class:`RunEnded` for one that has
        ended (a signal racing the run's end is dropped by the run's history) and
        :class:`InvalidSignal` for a name or id not 1 to 200 characters, or data not JSON
        or over 64 KiB encoded.
        """
        for what, text in (("name", name), ("id", signal_id)):
            if (text is not None or what == "name") and not _short_text(text):
                raise InvalidSignal(f"a signal {what} is 1 to {SIGNAL_NAME_LIMIT} characters")
        try:
            size = len(_codec.dumps(data))
        except TypeError as exc:
            raise InvalidSignal(f"signal {name!r}: data is not JSON: {exc}") from None
        if size > SIGNAL_DATA_LIMIT:
            raise InvalidSignal(
                f"signal {name!r}: data is {size} bytes encoded, over {SIGNAL_DATA_LIMIT}"
            )
        current = await self.get_run(run_id)
        if current.done:
            raise RunEnded(
                f"run {run_id} has ended ({current.status}): it takes no more signals",
                run_id=run_id,
                status=current.status,
            )
        # The waiting feature defines the signal's history event (deerflow imports it).
        received = h.event_class("SignalReceived")
        if received is None:
            raise DeerflowError("waiting nodes are not loaded in this process")
        sid = signal_id or uuid.uuid4().hex
        event = {
            "id": h.event_id(run_id, "signal", sid),
            "run_id": run_id,
            "signal_id": sid,
            "name": name,
            "data": data,
        }
        await self.append_history([received.model_validate(event)])
        return sid

    def _result(self, state: Any) -> RunResult:
        return run_result(state, self.registry.get(state.workflow, state.version))


def _short_text(text: object) -> bool:
    return isinstance(text, str) and 0 < len(text) <= SIGNAL_NAME_LIMIT


def ensure_loop_free() -> None:
    """Raise a clear error when a blocking helper is called inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(
        "Workflow.run() blocks; inside async code use "
        "`async with Engine(...) as engine: await (await engine.start(wf)).result()`"
    )


def run_sync(
    wf: WorkflowDef,
    *,
    params: Mapping[str, Any] | None,
    input: Any,
    store: str | None,
    timeout: float | None,
    run_id: str | None,
) -> RunResult:
    """``Workflow.run``: an engine for one run, blocking until it ends."""
    ensure_loop_free()

    async def main() -> RunResult:
        async with Engine(store, [wf]) as engine:
            handle = await engine.start(wf, params=params, input=input, run_id=run_id)
            return await handle.result(timeout=timeout)

    return asyncio.run(main())
