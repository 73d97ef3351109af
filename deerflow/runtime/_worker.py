"""Workers: consume the task queue, run task bodies, append their outcome to the run's history.

A task message is committed only after its outcome is durable in the history, so a worker that
dies mid-task leaves the message to be delivered again (task bodies are at-least-once; the
fold ignores a second outcome of the same attempt); one background committer commits what is
done, coalescing. Concurrency is bounded: a slot is held from the attempt's start until its
outcome is durable, and when every slot is busy the worker pauses its partitions instead of
buffering.

Eager dispatch: the orchestrator of the same process may hand an attempt straight to this
worker (:meth:`Worker.try_run`) when a slot is free, skipping the task queue's produce and
consume. Such an attempt is recorded as ``TaskScheduled(eager=True)``; if this process dies
before its outcome is durable, the run's next owner finds the attempt without an outcome when it
rebuilds the partition and puts it on the task queue. A worker stopping with eager attempts
still running puts them on the queue itself.

Priority: the worker reads ahead of its free slots (``prefetch`` records at most) and, as a
slot frees, starts the polled record of highest priority, a long-queued one going first in
the end (:mod:`._worker_ready`). Records still finish in any order and a partition is committed
only over its finished prefix, so reordering never commits a task before it is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import socket
import time
import traceback
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pydantic import ValidationError

import deerflow._codec as _codec
from deerflow.core import history as h
from deerflow.core.definition import WorkflowDef
from deerflow.core.expand import node_of
from deerflow.core.taskdef import TaskDef
from deerflow.core.topics import Topics
from deerflow.errors import DeerflowError, OutputNotSerializable
from deerflow.log.base import EventLog, GroupConsumer, Message, Record, TopicPartition
from deerflow.runtime._context import TaskContext, TaskDispatch, current_task, take_recorded
from deerflow.runtime._offsets import OffsetTracker
from deerflow.runtime._payloads import lost_input, within_limit
from deerflow.runtime._registry import WorkflowRegistry
from deerflow.runtime._service import BackgroundService
from deerflow.runtime._worker_ready import AGING, ReadyQueue
from deerflow.runtime.hooks import HookChain, Hooks, TaskAttempt, TaskEnded, WorkerStarting

log = logging.getLogger("deerflow.worker")

#: records a worker reads ahead of its free slots at least: the attempts among which a higher
#: priority starts first when more are queued than it has slots
MIN_PREFETCH = 16

TaskResolver = Callable[[WorkflowDef, TaskDispatch], tuple[TaskDef, Callable[..., Any]]]


def prefetch_setting(prefetch: int | None, concurrency: int) -> int:
    """``prefetch`` as given (a whole number >= 1), else ``concurrency``, at least
    :data:`MIN_PREFETCH`; :class:`DeerflowError` for a bad one."""
    if prefetch is None:
        return max(concurrency, MIN_PREFETCH)
    if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 1:
        raise DeerflowError(f"prefetch must be a whole number of 1 or more, not {prefetch!r}")
    return prefetch


def aging_setting(aging: float) -> float:
    """``priority_aging`` checked: seconds > 0; :class:`DeerflowError` otherwise."""
    if isinstance(aging, bool) or not isinstance(aging, int | float) or not aging > 0:
        raise DeerflowError(f"priority_aging must be a number of seconds > 0, not {aging!r}")
    return float(aging)


def default_worker_name() -> str:
    """``host:pid``, recorded on every outcome so the history shows who ran what."""
    return f"{socket.gethostname()}:{os.getpid()}"


def resolve_task(wf: WorkflowDef, dispatch: TaskDispatch) -> tuple[TaskDef, Callable[..., Any]]:
    """The definition and the callable for one dispatched attempt (fallback included).

    For a child of a node the definition is the node's (its timeout applies) and the callable
    comes from the node's kind.
    """
    node_id = node_of(dispatch.task_id)
    if node_id is not None:
        node = wf.get(node_id)
        return node, node.kind.child_body(node, dispatch.extra)
    task = wf.get(dispatch.task_id)
    fn = task.fallback if dispatch.fallback else task.kind.body(task)
    if fn is None:
        raise LookupError(f"task {task.id!r} of workflow {wf.name!r} has no body to run")
    return task, fn


async def run_attempt(
    task: TaskDef,
    fn: Callable[..., Any],
    dispatch: TaskDispatch,
    *,
    executor: ThreadPoolExecutor | None = None,
    worker: str | None = None,
    hooks: Hooks | None = None,
    shared: bool = False,
) -> h.TaskCompleted | h.TaskFailed:
    """Run one attempt of a task body and describe its outcome as a history event.

    ``hooks`` wrap the body (``around_task``) and see the outcome (``on_task_end``);
    ``shared``: the dispatch's values are the run state's, copied for the body as it reads them.
    """
    chain = hooks if hooks is None or isinstance(hooks, HookChain) else HookChain([hooks])
    outcome = await _attempt(task, fn, dispatch, executor, worker, chain, shared)
    if chain is not None and chain.sees_task_ends:
        chain.on_task_end(TaskEnded(dispatch, outcome))
    return outcome


async def _attempt(
    task: TaskDef,
    fn: Callable[..., Any],
    dispatch: TaskDispatch,
    executor: ThreadPoolExecutor | None,
    worker: str | None,
    hooks: HookChain | None,
    shared: bool,
) -> h.TaskCompleted | h.TaskFailed:
    ctx = TaskContext(dispatch, shared=shared)
    started = h.now()
    task_id = dispatch.task_id
    ident = (dispatch.run_id, task_id, dispatch.attempt)
    expansion: list[dict[str, Any]] | None = None
    try:
        if (
            hooks is not None and hooks.wraps_tasks
        ):  # e.g. the attempt runs inside its OpenTelemetry span (deerflow.tracing)
            output = await hooks.wrap(
                TaskAttempt(
                    dispatch, lambda: asyncio.wait_for(_call(fn, ctx, executor), task.timeout)
                )
            )
        else:
            output = await asyncio.wait_for(_call(fn, ctx, executor), task.timeout)
        try:
            output = _codec.bounded_json_value(output)
        except TypeError as exc:
            raise OutputNotSerializable(
                f"task {task_id!r} returned a value that is not JSON-serialisable: {exc}",
                task_id=task_id,
            ) from None
        if task_id == task.id and not dispatch.fallback:
            # What the node's kind records: a planner's answer becomes the node's expansion.
            output, expansion = task.kind.on_output(task, output)
    except TimeoutError:
        return h.TaskFailed(
            id=h.event_id(*ident, "failed"),
            run_id=dispatch.run_id,
            task_id=task_id,
            attempt=dispatch.attempt,
            error=f"task {task_id!r} timed out after {task.timeout}s",
            error_type="TimeoutError",
            retriable=True,
            started_at=started,
            worker=worker,
            fallback=dispatch.fallback,
        )
    except Exception as exc:
        return h.TaskFailed(
            id=h.event_id(*ident, "failed"),
            run_id=dispatch.run_id,
            task_id=task_id,
            attempt=dispatch.attempt,
            error=_summary(exc),
            error_type=type(exc).__name__,
            traceback=traceback.format_exc(limit=20),
            retriable=bool(getattr(exc, "retriable", True)),
            next_retry_delay=getattr(exc, "next_retry_delay", None),
            started_at=started,
            worker=worker,
            fallback=dispatch.fallback,
        )
    return h.TaskCompleted(
        id=h.event_id(*ident, "completed"),
        run_id=dispatch.run_id,
        task_id=task_id,
        attempt=dispatch.attempt,
        output=output,
        started_at=started,
        worker=worker,
        fallback=dispatch.fallback,
        expansion=expansion,
    )


async def _call(
    fn: Callable[..., Any], ctx: TaskContext, executor: ThreadPoolExecutor | None
) -> Any:
    token = current_task.set(ctx)  # publish_event / EventStore.publish find the task here
    try:
        if asyncio.iscoroutinefunction(fn):
            return await fn(ctx)
        loop = asyncio.get_running_loop()
        # copy_context: the thread sees current_task too
        call = contextvars.copy_context().run
        result = await loop.run_in_executor(executor, call, fn, ctx)
    finally:
        current_task.reset(token)
    if asyncio.iscoroutine(result):  # a sync wrapper that returned a coroutine
        return await result
    return result


class Worker(BackgroundService):
    """Runs tasks from the task queue (one member of the workers' consumer group).

    Args:
        log: the event log.
        registry: workflows this process can run.
        topics: topic names.
        concurrency: attempts run at once; sync bodies use a thread pool of this size.
        resolve: maps a dispatch to its task and callable (patterns extend it).
        prefetch: polled records held waiting for a slot at most (default: ``concurrency``,
            at least :data:`MIN_PREFETCH`); the higher priority starts first among them.
        priority_aging: seconds of queueing one point of a task's priority is worth.
    """

    def __init__(
        self,
        log: EventLog,
        registry: WorkflowRegistry,
        topics: Topics,
        *,
        concurrency: int = 16,
        resolve: TaskResolver = resolve_task,
        name: str | None = None,
        prefetch: int | None = None,
        priority_aging: float = AGING,
    ) -> None:
        super().__init__()
        self._log = log
        self._registry = registry
        self._topics = topics
        self._concurrency = max(1, concurrency)
        self._resolve = resolve
        self.name = name or default_worker_name()
        #: hooks of the plugins the engine adopted (the engine sets them)
        self.hooks: HookChain = HookChain()
        self._consumer: GroupConsumer | None = None
        self._executor = ThreadPoolExecutor(self._concurrency, thread_name_prefix="deerflow-task")
        self._inflight: set[asyncio.Task[None]] = set()
        #: attempts holding a slot (running, or appending their outcome), with their identity
        #: once known. A slot frees the moment its outcome is durable, as told by the append
        #: returning or by the local orchestrator reading the outcome (whichever comes first),
        #: so the run's next step, decided from that outcome, can take it.
        self._holding: dict[asyncio.Task[None], tuple[str, str, int] | None] = {}
        self._slot_of: dict[tuple[str, str, int], asyncio.Task[None]] = {}
        # Polled records waiting for a slot, at most ``_prefetch`` of them: the next attempt
        # starts the moment a slot frees, instead of after a resume and a fetch round trip,
        # and it is the one of highest priority among them. The records are of this worker's
        # own partitions, so holding them takes work from no other worker. (Also: an eager
        # attempt may take a slot a poll was sized for.)
        self._ready = ReadyQueue(aging_setting(priority_aging))
        self._prefetch = prefetch_setting(prefetch, self._concurrency)
        self._offsets = OffsetTracker()
        self._drain_timeout = 10.0
        self._released = asyncio.Event()
        self._paused = False
        self._slot = asyncio.Event()
        self._commit_lock = asyncio.Lock()
        self._commit_wanted = False
        self._committer: asyncio.Task[None] | None = None
        self.executed = 0
        #: eager attempts handed over by the local orchestrator and not finished, by identity
        self._eager: dict[tuple[str, str, int], TaskDispatch] = {}
        #: called with outcomes once they are durable (the engine wires its orchestrator here)
        self.on_outcome: Callable[[list[h.HistoryEvent]], None] | None = None
        #: whether an attempt's outcome is already in the log (the engine wires its
        #: orchestrator here): a task message delivered again is then not run again
        self.outcome_known: Callable[[str, str, int], bool] | None = None
        #: task messages skipped because their outcome was known
        self.skipped = 0

    #: stopping lets the loop see it is stopping; attempts in flight drain in _close
    graceful_stop = True

    def loop_name(self) -> str:
        """See :meth:`BackgroundService.loop_name`."""
        return "deerflow-worker"

    async def start(self, *, held: bool = False) -> None:
        """Join the workers' group and start consuming.

        ``held``: join, but run nothing (queued or eager) until :meth:`release`. The engine
        holds its worker until the services task bodies use (``publish_event``'s store) run.
        """
        if self.running:
            return
        if not held:
            self.release()
        await super().start()

    async def _open(self) -> None:
        self.hooks.on_worker_start(WorkerStarting(self.name))
        self._consumer = self._log.consumer(
            self._topics.worker_group, [self._topics.tasks], listener=self
        )
        await self._consumer.start()

    def release(self) -> None:
        """Start running attempts (see ``held``)."""
        self._released.set()

    async def stop(self, drain_timeout: float = 10.0) -> None:
        """Stop taking tasks, let running ones finish (up to ``drain_timeout``), commit, leave."""
        self._drain_timeout = drain_timeout
        self._released.set()  # a held loop wakes up to see it is stopping
        await super().stop()

    async def _close(self) -> None:
        if self._inflight:
            _done, pending = await asyncio.wait(self._inflight, timeout=self._drain_timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        await self._spill_eager()
        if self._committer is not None:
            await asyncio.wait({self._committer})
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await self._commit()
            await self._consumer.stop()
            self._consumer = None
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _spill_eager(self) -> None:
        """Put eager attempts that did not finish on the task queue for another worker."""
        spilled, self._eager = list(self._eager.values()), {}
        await self._to_queue(spilled)

    async def _to_queue(self, dispatches: list[TaskDispatch]) -> None:
        """Queue messages for eager attempts, then the history's note that they are queued.

        In that order: a crash in between leaves them queued *and* marked eager, so a rebuild
        queues them once more (a duplicate attempt, harmless) but never loses one.
        """
        if not dispatches:
            return
        try:
            await self._log.append([d.message(self._topics.tasks) for d in dispatches])
            await self._log.append(
                [
                    h.message(
                        self._topics.history,
                        h.TaskRequeued(
                            id=h.event_id(d.run_id, d.task_id, d.attempt, "requeued"),
                            run_id=d.run_id,
                            task_id=d.task_id,
                            attempt=d.attempt,
                        ),
                    )
                    for d in dispatches
                ]
            )
        except Exception:
            # The run's next owner re-dispatches them when it rebuilds the partition.
            log.warning(
                "worker %s: could not hand %d eager attempts to the task queue",
                self.name,
                len(dispatches),
                exc_info=True,
            )

    # -- eager dispatch ---------------------------------------------------------------------

    def try_run(self, dispatch: TaskDispatch) -> bool:
        """Run ``dispatch`` here and now if a slot is free (eager dispatch); else ``False``.

        The caller records the attempt as eager only when this returns ``True``.
        """
        if self.free_slots() == 0:  # polled attempts waiting for a slot go first
            return False
        ident = (dispatch.run_id, dispatch.task_id, dispatch.attempt)
        if ident in self._eager:
            return True  # already running here
        self._eager[ident] = dispatch
        self._take_slot(self._handle_eager(ident, dispatch))
        return True

    def free_slots(self) -> int:
        """How many attempts :meth:`try_run` would take right now."""
        if (
            self._consumer is None
            or self.stopping.is_set()
            or self._ready
            or not self._released.is_set()
        ):
            return 0
        return max(0, self._concurrency - len(self._holding))

    def task_partitions(self) -> frozenset[int]:
        """The task queue's partitions this worker consumes (its share of queued work)."""
        if self._consumer is None:
            return frozenset()
        return frozenset(tp.partition for tp in self._consumer.assignment())

    def runs_eagerly(self, run_id: str, task_id: str, attempt: int) -> bool:
        """Whether this worker is running that attempt, handed over by eager dispatch."""
        return (run_id, task_id, attempt) in self._eager

    async def _handle_eager(self, ident: tuple[str, str, int], dispatch: TaskDispatch) -> None:
        try:
            # A body gets its own copy of the inputs, as if it came through the queue: the
            # orchestrator's run state must not change when a body mutates what it was given.
            # The context copies what the body reads; but a kind's callable may be given parts
            # of ``extra`` itself (a fan-out's item), so a dispatch with any is copied whole.
            shared = not dispatch.extra
            if not shared:
                dispatch = TaskDispatch.model_validate_json(dispatch.model_dump_json())
            outcome, record = await self._run_dispatch(dispatch, shared=shared)
            await self._append_durably(self._history(outcome, record))
            self._free_slot(asyncio.current_task())
        except asyncio.CancelledError:
            return  # stopping: left in _eager, so stop() hands it to the task queue
        except Exception:
            log.exception(
                "worker %s: eager attempt %s failed unexpectedly; it goes to the task queue",
                self.name,
                ident,
            )
            if self._eager.pop(ident, None) is not None:
                await self._to_queue([dispatch])
            return
        self._eager.pop(ident, None)
        self.executed += 1
        if self.on_outcome is not None:
            self.on_outcome([outcome])

    def waiting(self) -> int:
        """Polled task messages waiting for a slot (at most ``prefetch``)."""
        return len(self._ready)

    def backlog(self) -> int:
        """Task messages of this worker's partitions not finished (metrics' queue depth).

        Unread as of the last poll plus in flight; summed over workers it is the queue's depth.
        """
        consumer = self._consumer
        if consumer is None:
            return 0
        unread = sum(consumer.lag(tp) or 0 for tp in consumer.assignment())
        return unread + self._offsets.inflight()

    # -- group membership -------------------------------------------------------------------

    async def on_assigned(self, partitions: frozenset[TopicPartition]) -> None:
        """New partitions start from the group's committed offsets."""
        log.debug("worker %s assigned %s", self.name, sorted(partitions))
        if self._paused and self._consumer is not None:
            # A partition comes back from a rebalance unpaused; while every slot is busy the
            # worker must not read it (a Kafka rebalance can give it back within milliseconds).
            self._consumer.pause(partitions)

    async def on_revoked(self, partitions: frozenset[TopicPartition]) -> None:
        """Commit what is done before the partitions move; unfinished work is redelivered."""
        with contextlib.suppress(Exception):
            await self._commit()
        self._offsets.forget(partitions)
        self._ready.drop(partitions)

    # -- the loop ---------------------------------------------------------------------------

    async def _run(self) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        await self._released.wait()
        while not self.stopping.is_set():
            self._start_ready()
            room = self._concurrency - len(self._holding) + self._prefetch - len(self._ready)
            try:
                if room <= 0:
                    await self._wait_for_a_slot(consumer)
                    continue
                if self._paused:
                    consumer.resume(consumer.assignment())
                    self._paused = False
                records = await consumer.poll(timeout=0.1, max_records=room)
            except Exception:
                log.exception("worker %s: polling the task queue failed; retrying", self.name)
                await asyncio.sleep(1.0)
                continue
            self._take(records)

    def _take(self, records: list[Record]) -> None:
        """Track polled records and queue them for a slot; whatever a poll returns runs (a
        record dropped here would be committed past by the records after it)."""
        if not records:
            return
        now = time.monotonic()
        for record in records:
            self._offsets.begin(record.tp, record.offset)
            self._ready.push(record, now)

    def _start_ready(self) -> None:
        while self._ready and len(self._holding) < self._concurrency and not self.stopping.is_set():
            self._take_slot(self._handle(self._ready.pop()))

    def _take_slot(self, attempt: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(attempt)
        self._inflight.add(task)
        self._holding[task] = None
        task.add_done_callback(self._ended)

    def _claim(self, ident: tuple[str, str, int]) -> None:
        """Name the current task's slot after the attempt it runs (see outcome_durable)."""
        task = asyncio.current_task()
        if task in self._holding and ident not in self._slot_of:  # a duplicate keeps its slot
            self._holding[task] = ident
            self._slot_of[ident] = task

    def outcome_durable(self, run_id: str, task_id: str, attempt: int) -> None:
        """The local orchestrator read this attempt's outcome from the log: free its slot."""
        task = self._slot_of.get((run_id, task_id, attempt))
        if task is not None:
            self._free_slot(task)

    def _free_slot(self, task: asyncio.Task[Any] | None) -> None:
        if task in self._holding:
            ident = self._holding.pop(task)
            if ident is not None:
                self._slot_of.pop(ident, None)
            self._slot.set()
            self._start_ready()

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._free_slot(task)  # starts a ready record now, not when the loop's poll returns

    async def _wait_for_a_slot(self, consumer: GroupConsumer) -> None:
        """Every slot is busy and the prefetch is full: pause the partitions until one frees.

        Paused partitions stay assigned (the member keeps its place in the group) and nothing
        more is read, so a worker holds at most ``concurrency`` attempts plus ``prefetch``
        polled records, whatever the queue's depth.
        """
        if not self._paused:
            consumer.pause(consumer.assignment())
            self._paused = True
        self._slot.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._slot.wait(), 1.0)
        if len(self._holding) >= self._concurrency:
            # Still full: a paused poll keeps the member alive in Kafka. It returns records only
            # if a rebalance gave partitions back during it: those are kept, at most one.
            self._take(await consumer.poll(timeout=0.0, max_records=1))

    async def _commit(self) -> None:
        """Commit every partition whose finished prefix grew.

        Serialised, so a commit never moves a partition backwards. Finished tasks do not call
        this one by one: they ask the committer (:meth:`_commit_soon`), which coalesces.
        """
        async with self._commit_lock:
            offsets = self._offsets.committable()
            if offsets and self._consumer is not None:
                await self._consumer.commit(offsets)
                self._offsets.committed(offsets)

    async def _handle(self, record: Record) -> None:
        try:
            messages, outcome = await self._outcome(record)
            if messages:  # none: delivered again, and its outcome is in the log already
                await self._append_durably(messages)
            self._free_slot(asyncio.current_task())
            if outcome is not None and self.on_outcome is not None:
                self.on_outcome([outcome])  # durable now: the local owner may act at once
        except asyncio.CancelledError:
            return  # stopping: not marked done, so the message is delivered again
        except Exception:
            log.exception(
                "worker %s: task message at %s:%d failed unexpectedly; it will be delivered again",
                self.name,
                record.tp,
                record.offset,
            )
            return
        self._offsets.done(record.tp, record.offset)
        if messages:
            self.executed += 1
        else:
            self.skipped += 1
        # Committed in the background: the slot is free once the outcome is durable, not
        # after a commit round trip. A crash before the commit redelivers the message: the
        # worker that gets it skips it if its orchestrator read the outcome; if not, the
        # second outcome is a duplicate the fold ignores.
        self._commit_soon()

    def _commit_soon(self) -> None:
        """Have the committer commit what is done, coalesced with everything done meanwhile."""
        self._commit_wanted = True
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(
                self._commit_loop(), name="deerflow-worker-commit"
            )

    async def _commit_loop(self) -> None:
        while self._commit_wanted:
            self._commit_wanted = False
            try:
                await self._commit()
            except Exception:
                log.warning(
                    "worker %s: committing offsets failed; the next commit covers them",
                    self.name,
                    exc_info=True,
                )

    async def _outcome(self, record: Record) -> tuple[list[Message], h.HistoryEvent | None]:
        try:
            dispatch = TaskDispatch.model_validate_json(record.value)
        except ValidationError as exc:
            lost = lost_input(record)
            if lost is not None:  # its payload is gone: the attempt fails, naming the blob
                failed = _failure(*lost, "PayloadUnreadable", self.name)
                return self._history(failed), failed
            return [self._dead_letter(record, f"unreadable task message: {exc}")], None
        known = self.outcome_known
        if known is not None and known(dispatch.run_id, dispatch.task_id, dispatch.attempt):
            log.info(
                "worker %s: %s/%s attempt %d already has an outcome; not run again",
                self.name,
                dispatch.run_id,
                dispatch.task_id,
                dispatch.attempt,
            )
            return [], None
        event, message = await self._run_dispatch(dispatch)
        return self._history(event, message), event

    def _history(
        self, outcome: h.TaskCompleted | h.TaskFailed, record: Message | None = None
    ) -> list[Message]:
        """The outcome's records (``record``: its own, already encoded), after what the body
        recorded (its search attributes)."""
        recorded = take_recorded(outcome.run_id, outcome.task_id, outcome.attempt)
        messages = [h.message(self._topics.history, e) for e in recorded]
        messages.append(record or h.message(self._topics.history, outcome))
        return messages

    async def _run_dispatch(
        self, dispatch: TaskDispatch, *, shared: bool = False
    ) -> tuple[h.TaskCompleted | h.TaskFailed, Message]:
        """The attempt's outcome and its record (encoded once: its size is checked on it).

        ``shared``: the dispatch is the orchestrator's own (see :class:`TaskContext`).
        """
        self._claim((dispatch.run_id, dispatch.task_id, dispatch.attempt))
        wf = self._registry.get(dispatch.workflow, dispatch.version)
        outcome: h.TaskCompleted | h.TaskFailed
        if wf is None:
            outcome = _not_loaded(dispatch, self.name)
        else:
            try:
                task, fn = self._resolve(wf, dispatch)
            except LookupError as exc:
                outcome = _failure(dispatch, str(exc), "LookupError", self.name)
            else:
                outcome = await run_attempt(
                    task,
                    fn,
                    dispatch,
                    executor=self._executor,
                    worker=self.name,
                    hooks=self.hooks,
                    shared=shared,
                )
        record = h.message(self._topics.history, outcome)
        fitting = within_limit(outcome, self._log.max_value_bytes, len(record.value))
        if fitting is not outcome:
            record = h.message(self._topics.history, fitting)
        return fitting, record

    def _dead_letter(self, record: Record, reason: str) -> Message:
        body: dict[str, Any] = {
            "reason": reason,
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "value": record.value.decode("utf-8", "replace"),
        }
        limit = self._log.max_value_bytes
        if limit is not None and len(_codec.dumps(body)) > limit:
            # Escaped as JSON, a record the log took may no longer fit in one: a cut copy
            # does (a character escapes to at most 6 bytes), appended once, not retried forever.
            body["value"] = body["value"][: limit // 8]
            body["value_bytes"] = len(record.value)
        return Message(
            topic=self._topics.dlq,
            key=record.key,
            value=_codec.dumps(body),
            headers=(("deerflow-reason", reason.encode()[:1000]),),
        )

    async def _append_durably(self, messages: list[Message]) -> None:
        delay = 0.1
        while True:
            try:
                await self._log.append(messages)
                return
            except Exception:
                if self.stopping.is_set():
                    raise
                log.warning(
                    "worker %s: appending an outcome failed; retrying in %.1fs",
                    self.name,
                    delay,
                    exc_info=True,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)


def _summary(exc: Exception) -> str:
    """The error as Python's last traceback line shows it (``KeyError: 'lines'``); deerflow's
    own errors are written to be read alone."""
    text = str(exc)
    if isinstance(exc, DeerflowError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _failure(dispatch: TaskDispatch, error: str, error_type: str, worker: str) -> h.TaskFailed:
    return h.TaskFailed(
        id=h.event_id(dispatch.run_id, dispatch.task_id, dispatch.attempt, "failed"),
        run_id=dispatch.run_id,
        task_id=dispatch.task_id,
        attempt=dispatch.attempt,
        error=error,
        error_type=error_type,
        retriable=False,
        worker=worker,
        fallback=dispatch.fallback,
    )


def _not_loaded(dispatch: TaskDispatch, worker: str) -> h.TaskFailed:
    return _failure(
        dispatch,
        f"workflow {dispatch.workflow!r} version {dispatch.version!r} is not loaded in worker "
        f"{worker}; every worker must load every workflow",
        "WorkflowNotLoaded",
        worker,
    )
