"""The orchestrator: owns history partitions, folds their runs, decides and acts.

Each history partition is owned by one orchestrator at a time (the consumer group's
assignment). On assignment the owner loads the state of the partition's runs from its newest
snapshot and the records after it (from the start without one), then follows new events:
``fold`` each into its run, ``advance`` the touched runs (pure), and append what was decided.
Task dispatches are appended before the ``TaskScheduled`` events that record them, so a crash
in between dispatches twice (harmless: at-least-once bodies, deduplicated outcomes) but never
records a dispatch that did not happen.
Durable timers live in the history too and are re-armed from it after a restart.

Eager dispatch: when a decision schedules exactly one attempt of a run (the next step of a
chain, a retry, a transition's handler) and this process also runs a worker with a free slot,
the attempt goes straight to that worker instead of through the task queue: no produce and no
consume before it starts. It is recorded as ``TaskScheduled(eager=True)``; whoever rebuilds the
run later and finds such an attempt without an outcome (this process died, or the partition
moved) puts it on the task queue. A decision that schedules several attempts (a fan-out) is split
as round-robin over the queue's partitions would split it (``_placement``): the local worker's
share starts here as far as it has free slots, the rest of its share goes to its partitions and
every other worker's share to theirs. So fan-outs still spread over every worker.

Memory: at most ``max_held_runs`` run states are held; past it the idle ones used least are
evicted, encoded, to a temporary SQLite database, and loaded back by the next record that
concerns them, a timer included (their timers stay in the timer heap): :mod:`._hotset`,
:mod:`._coldruns`. Once a burst of work is over, the allocator's free memory is given back
(:mod:`._trim`). An ended run's state is dropped once everything decided for it is
appended; only a tombstone stays (its id, and which retry could reopen it). The fold ignores
every event of an ended run except a duplicate ``RunRequested`` (which the tombstone ignores
in its place) and an operator's ``RunRetryRequested``, for which the run is folded again from
its partition first.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from deerflow.core import history as h
from deerflow.core.change import definition_change
from deerflow.core.decide import advance
from deerflow.core.decide_nodes import generation
from deerflow.core.definition import WorkflowDef
from deerflow.core.expand import node_of
from deerflow.core.state import COMPLETED, RUN_RUNNING, SCHEDULED, RunState, fold, next_retry
from deerflow.core.topics import Topics
from deerflow.log.base import EventLog, Message
from deerflow.runtime._context import TaskDispatch
from deerflow.runtime._hotset import MAX_HELD_RUNS, poll_size
from deerflow.runtime._outbox import Outbox
from deerflow.runtime._ownership import Ownership
from deerflow.runtime._payloads import refused
from deerflow.runtime._placement import EagerPlacement, LocalWorker
from deerflow.runtime._registry import WorkflowRegistry
from deerflow.runtime._results import RunResult, run_result
from deerflow.runtime._service import BackgroundService
from deerflow.runtime._snapshots import Snapshots
from deerflow.runtime._tombstones import DEDUPE_LIMIT, DEDUPE_WINDOW, EndedRuns
from deerflow.runtime._trim import Trimmer
from deerflow.runtime._waiters import EndWaiters

log = logging.getLogger("deerflow.orchestrator")

MAX_BACKLOG = 20_000  # decided messages waiting to be appended before the loop waits
SNAPSHOT_EVERY = 5000  # history records folded in a partition between two of its snapshots
SNAPSHOT_CLOSE_WAIT = 10.0  # seconds a stop waits for the last snapshots to be written

DispatchBuilder = Callable[[WorkflowDef, RunState, h.TaskScheduled], TaskDispatch]


def build_dispatch(wf: WorkflowDef, state: RunState, event: h.TaskScheduled) -> TaskDispatch:
    """The task message for a scheduled attempt, carrying what its body may read.

    What an attempt sees is its kind's to say: a task sees its upstream tasks' outputs; a
    child of a node sees what the node's kind gives it (its spec, the siblings it depends on).
    """
    node_id = node_of(event.task_id)
    if node_id is None:
        task = wf.get(event.task_id)
        visible, extra = task.kind.inputs(wf, state, task)
    else:
        task = wf.get(node_id)  # a node's children queue with the node's priority
        visible, extra = task.kind.child_inputs(wf, state, task, event.task_id)
    return TaskDispatch(
        run_id=state.run_id,
        workflow=state.workflow,
        version=state.version,
        task_id=event.task_id,
        attempt=event.attempt,
        fallback=event.fallback,
        params={**wf.default_params, **state.params},
        input=state.input,
        trigger=state.trigger,
        upstream=_upstream(state, visible),
        correlation_id=state.correlation_id,
        extra={**extra, **wf.dispatch_extra(state)},
        traceparent=state.traceparent,
        priority=state.priority if task.priority is None else task.priority,
    )


def _upstream(state: RunState, task_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    upstream: dict[str, dict[str, Any]] = {}
    for tid in task_ids:
        ts = state.tasks.get(tid)
        if ts is not None:
            upstream[tid] = {
                "status": ts.status,
                "output": ts.output if ts.status == COMPLETED else None,
                "error": ts.error,
                "attempts": ts.attempts,
            }
    return upstream


def runs_on_worker(wf: WorkflowDef, task_id: str) -> bool:
    """Whether a scheduled attempt of ``task_id`` is a task message (its kind may say not)."""
    if task_id in wf.tasks:  # a declared task: its kind's answer is cached
        return task_id not in wf.off_worker
    if node_of(task_id) is not None:
        return True
    task = wf.get(task_id)
    return task.kind.runs_on_worker(task)


class Orchestrator(BackgroundService):
    """One member of the orchestrators' group; see the module docstring.

    It wires four units, each behind a narrow interface, around the fold-and-decide loop it
    runs itself (with the durable timers and parking): :class:`Ownership` (which runs it holds,
    loaded from snapshots and the log on assignment), :class:`EagerPlacement` (local worker or
    task queue), :class:`Outbox` (group commit of the appends) and :class:`EndWaiters`
    (``Engine.wait``).
    """

    def __init__(
        self,
        log_: EventLog,
        registry: WorkflowRegistry,
        topics: Topics,
        *,
        dispatch: DispatchBuilder = build_dispatch,
        clock: Callable[[], float] = h.now,
        snapshot_every: int = SNAPSHOT_EVERY,
        dedupe_window: float = DEDUPE_WINDOW,
        dedupe_limit: int = DEDUPE_LIMIT,
        max_held_runs: int = MAX_HELD_RUNS,
    ) -> None:
        super().__init__()
        self._log = log_
        self._registry = registry
        self._topics = topics
        self._build_dispatch = dispatch
        self._clock = clock
        #: decided messages on their way to the log, in order (group commit)
        self._outbox = Outbox(log_, self._on_durable, self._refuse)
        #: the owned partitions' runs, tombstones and parked runs
        self._owned = Ownership(
            log_,
            topics.history,
            self,
            self._outbox,
            self.stopping,
            snapshots=(Snapshots(log_, topics) if snapshot_every > 0 else None),
            snapshot_every=snapshot_every,
            ended=EndedRuns(window=dedupe_window, limit=dedupe_limit, clock=clock),
            max_held_runs=max_held_runs,
        )
        #: where decided attempts go: the local worker or the task queue
        self._placement = EagerPlacement(topics.tasks)
        #: callers waiting for a run's end, answered once the end is durable (Engine.wait)
        self._waiters = EndWaiters(
            lambda state: run_result(state, self._registry.get(state.workflow, state.version))
        )
        #: states of the owned partitions' runs that have not ended (or not been evicted yet)
        self.runs: dict[str, RunState] = self._owned.runs
        #: runs whose loaded definition differs from theirs, with what changed (they wait)
        self.parked: dict[str, str] = self._owned.parked
        #: set once the first assignment's runs are loaded: from then on, which runs this
        #: member owns is known (Engine.wait asks before choosing who answers)
        self.settled = self._owned.settled
        self._timers: list[tuple[float, str, str]] = []
        self._missing_logged: set[tuple[str, str]] = set()
        self._pending_fired: list[h.HistoryEvent] = []
        self._poll_size = poll_size(max_held_runs)  # a round's runs at most double the limit
        #: returns the allocator's free memory to the system once a burst of work is over
        self.trimmer = Trimmer()

    @property
    def local_worker(self) -> LocalWorker | None:
        """A worker of this process for eager dispatch (the engine sets it), or None."""
        return self._placement.local_worker

    @local_worker.setter
    def local_worker(self, worker: LocalWorker | None) -> None:
        self._placement.local_worker = worker

    def loop_name(self) -> str:
        """See :meth:`BackgroundService.loop_name`."""
        return "deerflow-orchestrator"

    async def _open(self) -> None:
        """Join the orchestrators' group; the loop follows the history."""
        self._owned.partitions = await self._log.partition_count(self._topics.history)
        self._placement.partitions = await self._log.partition_count(self._topics.tasks)
        consumer = self._log.consumer(
            self._topics.orchestrator_group, [self._topics.history], listener=self._owned
        )
        self._owned.consumer = consumer
        await consumer.start()

    async def _close(self) -> None:
        """Leave the group; another member takes the partitions over from the log."""
        with contextlib.suppress(Exception):
            await self._outbox.drain()
            # An orderly stop leaves a snapshot of what changed: the next owner reads less.
            await asyncio.wait_for(self._owned.checkpoint(force=True), SNAPSHOT_CLOSE_WAIT)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._owned.finish_writes(), SNAPSHOT_CLOSE_WAIT)
        await self._owned.stop_loading()
        self._waiters.release()
        if self._owned.consumer is not None:
            await self._owned.consumer.stop()
            self._owned.consumer = None

    def lag(self) -> int:
        """History records of the owned partitions not folded yet, as of the last poll."""
        consumer = self._owned.consumer
        if consumer is None:
            return 0
        return sum(consumer.lag(tp) or 0 for tp in consumer.assignment())

    def knows(self, run_id: str) -> bool:
        """Whether ``run_id`` is a run of the owned partitions, running or ended (tombstoned)."""
        return self._owned.knows(run_id)

    def owned_partitions(self) -> frozenset[int]:
        """The history partitions this orchestrator is assigned now."""
        consumer = self._owned.consumer
        if consumer is None:
            return frozenset()
        return frozenset(tp.partition for tp in consumer.assignment())

    def owns(self, run_id: str) -> bool:
        """Whether this orchestrator owns ``run_id``'s history partition right now."""
        return self._owned.owns(run_id)

    @property
    def held_runs(self) -> int:
        """Run states held in memory now (``deerflow_held_runs``)."""
        return len(self.runs)

    @property
    def evicted_runs(self) -> int:
        """Live runs evicted from memory now, kept encoded until a record concerns them."""
        return len(self._owned.cold)

    @property
    def peak_held_runs(self) -> int:
        """The most run states held at the end of a loop round (after evicting) so far."""
        return self._owned.hot.peak

    @property
    def peak_held_in_round(self) -> int:
        """The most run states held within a loop round (after its folds, before evicting)."""
        return self._owned.hot.peak_in_round

    @property
    def largest_eviction(self) -> int:
        """The most runs evicted at once, without the loop getting a turn in between."""
        return self._owned.hot.largest_slice

    # -- what Ownership asks of the loop --------------------------------------------------------

    def fold_record(self, value: bytes, touched: dict[str, RunState]) -> None:
        """Fold one history record into its run (see :class:`Owner`)."""
        try:
            event = h.decode(value)
        except ValueError:
            log.error("ignoring an undecodable history record: %r", value[:200])
            return
        self._fold_event(event, touched)

    def forgotten(self, run_ids: set[str]) -> None:
        """Runs no longer held: their waiters ask the run index, their timers go."""
        self._waiters.release(run_id for run_id in run_ids if run_id in self._waiters)
        self._drop_timers(run_ids)

    def resume(self, live: list[RunState]) -> int:
        """Re-arm the timers of runs folded from the log and re-dispatch orphaned attempts.

        Returns how many eager attempts went back on the task queue.
        """
        for state in live:
            for timer_id, fire_at in state.timers.items():
                heapq.heappush(self._timers, (fire_at, state.run_id, timer_id))
        orphans = self._placement.orphans(self._eager_attempts(live))
        self._submit(orphans, [])
        return len(orphans)

    def advance(self, runs: Iterable[RunState]) -> None:
        """Decide what is next for ``runs`` and submit it (see :class:`Owner`)."""
        self._advance(runs)

    def _eager_attempts(self, live: Iterable[RunState]) -> Iterator[TaskDispatch]:
        """The eager attempts of ``live`` runs that have no outcome yet."""
        for state in live:
            wf = self._definition(state)
            if wf is None or state.run_id in self.parked:
                continue
            for task_id, task in state.tasks.items():
                if not task.eager or task.status != SCHEDULED:
                    continue
                scheduled = h.TaskScheduled(
                    id=h.event_id(state.run_id, task_id, task.attempts, "scheduled"),
                    run_id=state.run_id,
                    task_id=task_id,
                    attempt=task.attempts,
                    fallback=task.fallback,
                )
                yield self._build_dispatch(wf, state, scheduled)

    def _drop_timers(self, run_ids: set[str]) -> None:
        """Drop the timers of ``run_ids`` (ended, or no longer owned); a far-off timer would
        otherwise pin its entry. (An evicted run's timers stay: they load it back.)"""
        if run_ids and self._timers:
            self._timers = [t for t in self._timers if t[1] not in run_ids]
            heapq.heapify(self._timers)

    # -- ended runs: tombstones instead of states ----------------------------------------------

    def _evict_ended(self) -> None:
        """Replace the states of ended runs whose decisions are all durable with tombstones.

        Called once per loop round, so it costs nothing per event. A run is only evicted once
        the append carrying its last decisions succeeded: until then a failed append makes the
        loop rebuild the partition from the log, which needs nothing from the evicted state.
        """
        if self._outbox.untrusted:
            return  # the loop is about to rebuild; its states decide what stays
        if self._outbox.idle:
            self._outbox.settle()
        evicted: set[str] = set()
        for run_id in self._owned.ended.due(self._outbox.appended):
            state = self.runs.get(run_id)
            if state is not None and state.terminal:  # not forgotten, not reopened meanwhile
                if run_id in self._waiters:  # its ending is durable: due says so
                    self._waiters.answer(state)
                self._owned.tombstone(state)
                evicted.add(run_id)
        self._drop_timers(evicted)

    # -- the loop ---------------------------------------------------------------------------

    async def _run(self) -> None:
        assert self._owned.consumer is not None
        while not self.stopping.is_set():
            try:
                await self._step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("orchestrator step failed; rebuilding owned partitions")
                await asyncio.sleep(1.0)
                await self._owned.rebuild_all()

    async def _step(self) -> None:
        """One round: fold what was appended, decide, queue the appends, evict ended runs."""
        consumer = self._owned.consumer
        assert consumer is not None
        records = self._owned.fresh(
            await consumer.poll(timeout=self._poll_timeout(), max_records=self._poll_size)
        )
        touched: dict[str, RunState] = {}
        for record in records:
            self.fold_record(record.value, touched)
        if self._owned.reopen:
            await self._owned.reopen_runs(touched)
        self._fire_due_timers(touched)
        if touched:
            self._advance(touched.values())
        if self._outbox.failed or self._outbox.backlog > MAX_BACKLOG:
            await self._outbox.drain()  # bounded memory; raises what an append raised
        self._evict_ended()
        evicted = await self._owned.evict_idle()
        await self._owned.checkpoint()
        self.trimmer.worked(len(records) + evicted)
        if not records:
            await self.trimmer.quiet()

    def _poll_timeout(self) -> float:
        if not self._timers:
            return 0.5
        return max(0.0, min(0.5, self._timers[0][0] - self._clock()))

    def _fold_event(self, event: h.HistoryEvent, touched: dict[str, RunState]) -> None:
        if isinstance(event, h.TaskCompleted | h.TaskFailed):
            worker = self._placement.local_worker
            if worker is not None:
                # Read back, so durable: the attempt's slot is free before the worker that
                # ran it resumes from its append, and the run's next step can take it.
                worker.outcome_durable(event.run_id, event.task_id, event.attempt)
        state = self._owned.get(event.run_id)  # an evicted run is loaded back first
        if state is None:
            if self._owned.reopens(event) or not isinstance(event, h.RunRequested):
                return  # tombstoned (a retry is noted), or not started here
            state = self._owned.add(event.run_id)
        else:
            # Even a fold that changes nothing may note the event's id (its repeat is known).
            self._owned.changed(event.run_id)
        if fold(state, event):
            touched[event.run_id] = state

    def outcome_known(self, run_id: str, task_id: str, attempt: int) -> bool:
        """Whether that attempt's outcome is known here, so running it again would be waste.

        A worker asks before running a task message: one delivered again after a crash
        between its outcome's append and the offset commit is skipped when this process holds
        the run. So is a queued attempt of a run that ended for good: completed, or
        cancelled while the attempt waited. (A failed run may be retried: its attempts
        run.) Nothing is lost by a ``False``: the attempt runs, and the fold ignores its
        second outcome.
        """
        if self._outbox.untrusted:
            return False  # the states may hold decisions the log does not
        state = self.runs.get(run_id)
        if state is None:  # ended and evicted here, or not known
            return self._owned.ended.get(self._owned.partition_of(run_id), run_id) == 0
        if state.terminal and next_retry(state) == 0:
            return True  # ended for good (completed, cancelled, ...): no attempt counts now
        task = state.tasks.get(task_id)
        if task is None:
            return False
        return task.attempts > attempt or (task.attempts == attempt and task.status != SCHEDULED)

    def observe(self, events: Iterable[h.HistoryEvent]) -> None:
        """Act at once on events this process has just appended durably.

        A run started, or a task finished, in the process that owns the run needs no round
        trip through the broker before its next step: the owner folds and decides now. The
        same events read back from the log later are duplicates the fold ignores (or, for runs
        that ended and were evicted meanwhile, their tombstones ignore).
        """
        touched: dict[str, RunState] = {}
        for event in events:
            if self.owns(event.run_id):
                self._fold_event(event, touched)
        if touched:
            self._advance(touched.values())

    def _fire_due_timers(self, touched: dict[str, RunState]) -> None:
        now = self._clock()
        while self._timers and self._timers[0][0] <= now:
            _, run_id, timer_id = heapq.heappop(self._timers)
            state = self._owned.get(run_id)  # an evicted run is loaded back first
            if state is None or timer_id not in state.timers:
                continue
            fired = h.TimerFired(
                id=h.event_id(run_id, timer_id, "fired"), run_id=run_id, timer_id=timer_id
            )
            self._pending_fired.append(fired)
            fold(state, fired)
            self._owned.changed(run_id)
            touched[run_id] = state

    def _advance(self, runs: Iterable[RunState]) -> None:
        now = self._clock()
        dispatches: list[Message] = []
        history: list[Message] = [h.message(self._topics.history, e) for e in self._pending_fired]
        self._pending_fired = []
        ended: list[str] = []
        for state in runs:
            wf = self._definition(state)
            if wf is not None:
                self._record_parking(state, history)
                self._decide(wf, state, now, dispatches, history)
            if state.terminal:
                ended.append(state.run_id)
        self._submit(dispatches, history, ended)

    def _record_parking(self, state: RunState, history: list[Message]) -> None:
        """Record in the history that the run is parked (or goes on again), once per change.

        ``_definition`` found out; the history makes every process report it, including
        those that load another definition or none.
        """
        if state.terminal:
            return
        reason = self.parked.get(state.run_id)
        event: h.HistoryEvent
        if reason is not None and state.parked != reason:
            event = h.RunParked(
                id=h.event_id(state.run_id, "parked", state.parks + 1),
                run_id=state.run_id,
                reason=reason,
            )
        elif reason is None and state.parked is not None:
            event = h.RunResumed(
                id=h.event_id(state.run_id, "resumed", state.parks), run_id=state.run_id
            )
        else:
            return
        fold(state, event)
        self._owned.changed(state.run_id)
        history.append(h.message(self._topics.history, event))

    def _decide(
        self,
        wf: WorkflowDef,
        state: RunState,
        now: float,
        dispatches: list[Message],
        history: list[Message],
    ) -> None:
        """Advance ``state``; add the task messages and history events decided to the lists."""
        before = _folded(state)
        events = advance(wf, state, now)
        if events or _folded(state) != before:
            self._owned.changed(state.run_id)
        attempts = [
            isinstance(e, h.TaskScheduled)
            and e.run_id == state.run_id
            and runs_on_worker(wf, e.task_id)
            for e in events
        ]
        placement = self._placement.split(sum(attempts))
        for event, is_attempt in zip(events, attempts, strict=True):
            if is_attempt:
                assert isinstance(event, h.TaskScheduled)
                queued = self._placement.route(self._build_dispatch(wf, state, event), placement)
                if queued is None:  # started on the local worker
                    event = event.model_copy(update={"eager": True})
                    state.tasks[event.task_id].eager = True
                else:
                    dispatches.append(queued)
            elif isinstance(event, h.TimerStarted):
                heapq.heappush(self._timers, (event.fire_at, state.run_id, event.timer_id))
            history.append(h.message(self._topics.history, event))

    # -- appending decisions ----------------------------------------------------------------

    def _submit(
        self, dispatches: list[Message], history: list[Message], ended: Iterable[str] = ()
    ) -> None:
        """Queue decided messages for the outbox while the loop goes on.

        The runs' states already include these events, so the loop may decide further while
        they are appended. ``ended`` runs may be evicted once this submission is appended.
        """
        self._owned.ended.ending(self._outbox.submit(dispatches, history), ended)

    def _refuse(self, message: Message) -> list[Message]:
        """The failure appended instead of ``message``, too large for the log (see
        :func:`refused`), after what the workflow records as a run ends (flow control frees
        the run's slot) when the run had not decided its end; a run whose end is refused
        ends failed in memory too, so its waiters are answered as the log tells it."""
        limit = self._log.max_value_bytes
        assert limit is not None  # the outbox only refuses when the log has a limit
        event = refused(message, limit, self._topics.tasks)
        if event is None:
            return []
        log.error("%s", getattr(event, "error", event.type))
        state = self._owned.get(event.run_id)
        events = [event]
        if isinstance(event, h.RunFailed) and state is not None:
            # A retried run may be refused again: its failure is a new event each time.
            event = event.model_copy(update={"id": h.event_id(event.id, *generation(state))})
            wf = self._registry.get(state.workflow, state.version)
            events = [*(wf.on_ending(state, event.ts) if wf is not None else []), event]
            if state.terminal:  # its refused end was folded here, and never happens
                state.seen.pop(h.decode(message.value).id, None)
                state.status, state.output = RUN_RUNNING, None
                for ending in events:
                    fold(state, ending)
                self._owned.changed(state.run_id)
        return [h.message(self._topics.history, e) for e in events]

    def _on_durable(self, appended: int) -> None:
        """Answer the waiters of runs whose ending is durable by now (appended)."""
        if not self._waiters:
            return
        for run_id in self._owned.ended.durable(appended, self._waiters):
            state = self.runs.get(run_id)
            if state is not None and state.terminal:  # not reopened meanwhile
                self._waiters.answer(state)

    # -- waiting for a run's end --------------------------------------------------------------

    def when_ended(self, run_id: str) -> asyncio.Future[RunResult] | None:
        """A future for the result of ``run_id``, set once its ending is durably appended here.

        ``None`` unless the run is in a partition this orchestrator owns, and not ended and
        evicted: then it decides the run's end. If the run's partition moves to another member
        (or this one stops) before that, the future fails with ``RunMoved`` and the
        caller asks the run index instead. Pass the future to :meth:`forget_waiter` when done
        with it.
        """
        if not self.owns(run_id):
            return None
        if self._owned.is_ended(run_id):
            return None  # ended and evicted here: the run index has its result
        state = self.runs.get(run_id)  # None: owned, but its start not read yet
        waiter = self._waiters.add(run_id)
        if state is not None and state.terminal and self._outbox.idle:
            self._outbox.settle()
            self._on_durable(self._outbox.appended)  # ended before: answered now if durable
        return waiter

    def forget_waiter(self, run_id: str, waiter: asyncio.Future[RunResult]) -> None:
        """Stop tracking ``waiter`` (answered, or its caller gave up)."""
        self._waiters.forget(run_id, waiter)

    def _definition(self, state: RunState) -> WorkflowDef | None:
        wf = self._registry.get(state.workflow, state.version)
        if wf is None and (state.workflow, state.version) not in self._missing_logged:
            self._missing_logged.add((state.workflow, state.version))
            log.error(
                "run %s waits: workflow %r version %r is not loaded in this process",
                state.run_id,
                state.workflow,
                state.version,
            )
        if wf is not None and not state.terminal:
            reason = definition_change(wf, state)
            if reason is None:
                if self.parked.pop(state.run_id, None) is not None:
                    self._owned.changed(state.run_id)
            elif state.run_id not in self.parked:  # decide does nothing for it; say why, once
                self.parked[state.run_id] = reason
                self._owned.changed(state.run_id)
                log.error("run %s is parked: %s", state.run_id, reason)
        return wf


def _folded(state: RunState) -> tuple[int, int, str | None]:
    """What changes when anything is folded into ``state``: its count of changes, and its
    window of event ids (an event that changed nothing may still be noted there)."""
    return state.events, len(state.seen), next(reversed(state.seen), None)
