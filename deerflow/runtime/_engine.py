"""The engine: one process's orchestrator, worker and run index on one event log.

:class:`Engine` is its construction, its plugins and the start of runs; its lifecycle, its
queries of runs and its operations on runs are the parts it is made of
(:mod:`._enginelife`, :mod:`._runqueries`, :mod:`._runops`), its settings are read in
:mod:`._enginesettings`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any, overload

import deerflow._codec as _codec
from deerflow.core import history as h
from deerflow.core.definition import WorkflowDef
from deerflow.core.state import RunState
from deerflow.core.topics import Topics
from deerflow.errors import DeerflowError
from deerflow.log import open_log
from deerflow.log.base import EventLog
from deerflow.payloads import BlobStore
from deerflow.runtime._archiver import Archiver
from deerflow.runtime._archivestore import ArchiveStore
from deerflow.runtime._enginelife import EngineLifecycle
from deerflow.runtime._enginesettings import (
    DEFAULT_RETENTION,
    DEFAULT_STORE,
    archive_setting,
    default_store,
    snapshot_setting,
)
from deerflow.runtime._hotset import held_runs_setting
from deerflow.runtime._orchestrator import Orchestrator
from deerflow.runtime._payloads import check_fits, payload_log
from deerflow.runtime._registry import WorkflowRegistry
from deerflow.runtime._results import RunResult
from deerflow.runtime._runhandle import RunHandle, new_run_id
from deerflow.runtime._runindex import RunIndex
from deerflow.runtime._runops import SIGNAL_DATA_LIMIT, SIGNAL_NAME_LIMIT, RunOperations
from deerflow.runtime._runqueries import SETTLE_WAIT, RunQueries
from deerflow.runtime._tombstones import DEDUPE_LIMIT, DEDUPE_WINDOW
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

__all__ = [
    "DEFAULT_RETENTION",
    "DEFAULT_STORE",
    "SETTLE_WAIT",
    "SIGNAL_DATA_LIMIT",
    "SIGNAL_NAME_LIMIT",
    "Engine",
    "RunHandle",
    "default_store",
    "ensure_loop_free",
    "new_run_id",
    "run_sync",
    "snapshot_setting",
]


class Engine(EngineLifecycle, RunQueries, RunOperations):
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
        archiving = archive_setting(archive, retention)  # a bad one is an error in any process
        if archiving is not None:
            self.index.archive, age = archiving
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

    # -- start -------------------------------------------------------------------------------

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
