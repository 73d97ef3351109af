"""The run index: follows every history partition into a durable visibility store.

It answers ``get_run``, ``list_runs`` and ``RunHandle.result`` in any process (a CLI, the
dashboard, a client that only starts runs), independently of which orchestrator owns a run.

What it keeps:

* the visibility store (:mod:`._visibility`): a row per run plus the offsets applied, in
  SQLite: the store file itself in embedded mode, a local file per process on Kafka, an
  in-memory database on ``memory://``. A process that starts reads the rows at once and
  applies only the history appended since the offsets stored.
* in memory, the folded states of the runs it touched last (a bounded LRU, :data:`LIVE_RUNS`).
  A run that is not there is folded from its own history only: its row says on which
  partition it lies and between which offsets.

Catching up is incremental: a caller waits for what it needs (its run, or the history
appended before its call), however long the backlog, and never gets an error for its size.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import deerflow._codec as _codec
from deerflow.core import history as h
from deerflow.core.state import LIVE_STATUSES, RunState, fold
from deerflow.core.topics import Topics
from deerflow.errors import PayloadUnreadable
from deerflow.log.base import EventLog, LogReader, Record, TopicPartition
from deerflow.log.memory import MemoryEventLog
from deerflow.log.sqlite import SqliteEventLog
from deerflow.payloads import payload_error, stored_in
from deerflow.runtime._archivemarks import MarkFollower, encode_mark
from deerflow.runtime._archivestore import ArchiveError, ArchiveStore, decode_run, read_location
from deerflow.runtime._runrows import (
    Archived,
    Change,
    RunQuery,
    RunRow,
    Unswept,
    row_complete,
    summary_state,
)
from deerflow.runtime._visibility import VisibilityStore
from deerflow.runtime._waiters import RunFutures

log = logging.getLogger("deerflow.runindex")

Listener = Callable[[RunState, h.HistoryEvent], None]
T = TypeVar("T")

#: Folded runs kept in memory at most (the ones touched last); the rest are rows in SQLite.
LIVE_RUNS = 10_000
#: Records read and applied (one SQLite transaction) at a time.
BATCH = 5000


def index_path(log_: EventLog, topics: Topics, configured: str | None = None) -> tuple[str, bool]:
    """Where the index of ``log_`` lives, and whether that file holds only the index.

    ``configured`` (``Engine(index=...)``) or ``DEERFLOW_INDEX`` win when they name a file
    (or ``:memory:``). Else: the SQLite store file itself, an in-memory database for
    ``memory://``, and on Kafka a file named after the brokers and the topic prefix in the
    directory ``DEERFLOW_INDEX`` names, or in ``.deerflow/`` in the working directory.
    """
    chosen = configured or os.environ.get("DEERFLOW_INDEX")
    if chosen and not os.path.isdir(chosen):
        return chosen, chosen != ":memory:"
    log_ = stored_in(log_)
    if isinstance(log_, SqliteEventLog):
        return str(log_.path), False
    if isinstance(log_, MemoryEventLog):
        return ":memory:", False
    digest = hashlib.sha256(f"{log_.url}\x00{topics.history}".encode()).hexdigest()[:16]
    return os.path.join(chosen or ".deerflow", f"runindex-{digest}.db"), True


@dataclass(slots=True)
class _Live:
    """A folded run in memory, and where its history lies."""

    state: RunState
    partition: int
    first_offset: int
    last_offset: int


class _LiveRuns(Mapping[str, RunState]):
    """The folded runs in memory, by id (read-only view of the LRU)."""

    def __init__(self, live: OrderedDict[str, _Live]) -> None:
        self._live = live

    def __getitem__(self, key: str) -> RunState:
        return self._live[key].state

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._live))

    def __len__(self) -> int:
        return len(self._live)


class RunIndex:
    """Every run in the history: rows in SQLite, the last-touched runs folded in memory.

    Args:
        log_: the event log.
        topics: topic names.
        path: the index file (see :func:`index_path`).
        live_runs: folded runs kept in memory at most.
    """

    def __init__(
        self,
        log_: EventLog,
        topics: Topics,
        *,
        path: str | None = None,
        live_runs: int = LIVE_RUNS,
    ) -> None:
        self._log = log_
        self._topics = topics
        self._path_option = path
        self._limit = max(1, live_runs)
        self._live: OrderedDict[str, _Live] = OrderedDict()
        self.runs: Mapping[str, RunState] = _LiveRuns(self._live)
        """Folded runs this process touched last (at most ``live_runs``), by id."""
        self.store: VisibilityStore | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._reader: LogReader | None = None
        self._partitions: list[TopicPartition] = []
        #: per partition, the offset of the next record this process applies
        self._position: dict[int, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._polls = 0
        #: per partition, the reader's position as of the last applied poll
        self._read_to: dict[int, int] = {}
        #: history records this process applied (the tail since the stored offsets)
        self.applied_records = 0
        self._changed = asyncio.Condition()
        #: per run, the futures of wait() calls to wake when it changes (removed by each
        #: waiter as it leaves: bounded by the waiters)
        self._waiting: RunFutures[None] = RunFutures()
        self._tests: dict[asyncio.Future[None], Callable[[RunState], bool]] = {}
        self._listeners: list[Listener] = []
        self._start_lock = asyncio.Lock()
        self._fold_lock = asyncio.Lock()
        #: where this process archives runs (``Engine(archive=...)``); an archived run's
        #: history is read back from the location its row names, with or without it
        self.archive: ArchiveStore | None = None
        #: follows the archive marks (:mod:`._archivemarks`) into an index of its own file
        self.marks: MarkFollower | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the store and follow the history from the offsets it applied; idempotent."""
        async with self._start_lock:
            if self._task is not None:
                return
            path, own = index_path(self._log, self._topics, self._path_option)
            identity = f"{_identity(self._log.url)} {self._topics.history}"
            self.store = VisibilityStore(path, identity, own_file=own)
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="deerflow-runindex")
            await self._call(self.store.open)
            count = await self._log.partition_count(self._topics.history)
            self._partitions = [TopicPartition(self._topics.history, p) for p in range(count)]
            applied = await self._call(lambda: self.store_().offsets(self._topics.history))
            self._position = {p: applied.get(p, 0) for p in range(count)}
            if self.store.fresh and await self._history_exists():
                # Its own file gone (or unusable) is worth a warning; tables new in a store
                # file mean a store written before the index existed, or a brand-new one.
                log.log(
                    logging.WARNING if own else logging.INFO,
                    "run index %s is missing or was unusable: rebuilding it from the whole "
                    "history once",
                    path,
                )
            self._reader = self._log.reader(
                {tp: self._position[tp.partition] for tp in self._partitions}
            )
            await self._reader.start()
            if own:
                # An index of one process learns from the log which runs any process archived.
                topic = self._topics.archive_marks
                store = self.store
                self.marks = MarkFollower(
                    self._log,
                    topic,
                    count,
                    lambda: store.offsets(topic),
                    functools.partial(store.apply_marks, topic),
                    self._call,
                )
                await self.marks.start()
            self._task = asyncio.create_task(self._follow(), name="deerflow-runindex")

    async def stop(self) -> None:
        """Stop following and close the store; idempotent."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.marks is not None:
            await self.marks.stop()
            self.marks = None
        if self._reader is not None:
            await self._reader.stop()
            self._reader = None
        if self.store is not None and self._thread is not None:
            await self._call(self.store.close)
            self._thread.shutdown(wait=False)
            self._thread = None
        self.store = None

    async def _history_exists(self) -> bool:
        async with self._log.reader({tp: 0 for tp in self._partitions}) as reader:
            records = await reader.poll(timeout=0.5, max_records=1)
            return bool(records) or any(reader.lag(tp) for tp in self._partitions)

    @property
    def topics(self) -> Topics:
        """The topic names whose history this index follows."""
        return self._topics

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(state, event)`` for every event that changes a run, as applied."""
        self._listeners.append(listener)

    def store_(self) -> VisibilityStore:
        """The open visibility store."""
        if self.store is None:
            raise RuntimeError("the run index is not started")
        return self.store

    async def _call(self, call: Callable[[], T]) -> T:
        assert self._thread is not None
        return await asyncio.get_running_loop().run_in_executor(self._thread, call)

    # -- following -------------------------------------------------------------------------------

    async def _follow(self) -> None:
        while True:
            try:
                assert self._reader is not None
                records = await self._reader.poll(timeout=0.05, max_records=BATCH)
                if records:
                    await self._apply(records)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("applying the history to the run index failed; retrying")
                await asyncio.sleep(1.0)
                with contextlib.suppress(Exception):
                    await self._restart_reader()
                continue
            async with self._changed:
                self._polls += 1
                self._read_to = self._reader_positions()
                self._changed.notify_all()

    def _reader_positions(self) -> dict[int, int]:
        """Per partition, the offset after what this process has read and applied (past
        records that retention removed, which the reader skips and nothing applies)."""
        assert self._reader is not None
        return {tp.partition: self._reader.position(tp) for tp in self._partitions}

    async def _restart_reader(self) -> None:
        """Follow again from the offsets stored: what a failed batch folded is read again."""
        async with self._fold_lock:
            self._live.clear()
            applied = await self._call(lambda: self.store_().offsets(self._topics.history))
            self._position = {tp.partition: applied.get(tp.partition, 0) for tp in self._partitions}
            if self._reader is not None:
                await self._reader.stop()
            self._reader = self._log.reader(
                {tp: self._position[tp.partition] for tp in self._partitions}
            )
            await self._reader.start()

    async def _apply(self, records: list[Record]) -> None:
        changed: dict[str, _Live] = {}
        offsets: dict[int, int] = {}
        async with self._fold_lock:
            rows = await self._rows_of(records)
            for record in records:
                if record.offset < self._position.get(record.partition, 0):
                    continue  # read again after a reconnect: applied already
                live = await self._fold_record(record, rows)
                self.applied_records += 1
                self._position[record.partition] = record.offset + 1
                offsets[record.partition] = record.offset + 1
                if live is not None:
                    changed[live.state.run_id] = live
            self._wake(changed)
            self._trim()
            changes = [
                Change(_copy(lv.state), lv.partition, lv.first_offset, lv.last_offset)
                for lv in changed.values()
            ]
            await self._call(lambda: self.store_().apply(self._topics.history, changes, offsets))

    async def _rows_of(self, records: list[Record]) -> dict[str, Any]:
        """The stored rows of the runs in ``records`` not folded in memory, in one query."""
        missing = {r.key for r in records if r.key is not None and r.key not in self._live}
        if not missing:
            return {}
        return await self._call(lambda: self.store_().rows(missing))

    async def _fold_record(self, record: Record, rows: dict[str, Any]) -> _Live | None:
        try:
            event = h.decode(record.value)
        except ValueError:
            self._undecodable(record)
            return None
        live = self._live.get(event.run_id)
        if live is None:
            row = rows.get(event.run_id)
            ended = row is not None and row["status"] not in LIVE_STATUSES
            if ended and not isinstance(event, h.RunRetryRequested):
                return None  # an ended run's fold takes nothing else: no need to load it
            if row is not None:
                live = await self._load_to(event.run_id, row, record.offset)
            if live is None:
                if not isinstance(event, h.RunRequested):
                    return None  # no such run: the fold would ignore it
                live = _Live(RunState(run_id=event.run_id), record.partition, record.offset, 0)
            self._remember(live)
        else:
            self._live.move_to_end(event.run_id)
        if not fold(live.state, event):
            return None
        live.last_offset = record.offset
        for listener in self._listeners:
            listener(live.state, event)
        return live

    def _undecodable(self, record: Record) -> None:
        if payload_error(record) is not None and record.key is not None:
            # Folded without it, the run would look stuck; reading the run loads it again,
            # which names the lost payload.
            log.error("run index: %s", payload_error(record))
            self._live.pop(record.key, None)

    async def _load_to(self, run_id: str, row: Any, before: int) -> _Live | None:
        """:meth:`_load` for the fold, which passes over a run whose payload is lost."""
        try:
            return await self._load(run_id, row, before=before)
        except PayloadUnreadable as exc:
            log.error("run index: %s", exc)
            return None

    def _remember(self, live: _Live) -> None:
        self._live[live.state.run_id] = live
        self._live.move_to_end(live.state.run_id)

    def _trim(self) -> None:
        while len(self._live) > self._limit:
            self._live.popitem(last=False)

    async def _load(self, run_id: str, row: Any, *, before: int | None = None) -> _Live | None:
        """Fold ``run_id`` from its own history (the part this process applied, or ``before``).

        ``row`` is its row in the store. Called with the fold lock held. Raises
        :class:`PayloadUnreadable` when a record's payload is lost (its blob is gone).
        """
        partition = int(row["partition_id"])
        stop = self._stop(row) if before is None else before
        state = RunState(run_id=run_id)
        last = int(row["first_offset"])
        for record in await self._run_records(run_id, row, stop):
            try:
                event = h.decode(record.value)
            except ValueError:
                if (error := payload_error(record)) is not None:
                    raise PayloadUnreadable(error, retriable=False) from None
                continue
            if event.run_id == run_id and fold(state, event):
                last = record.offset
        if not state.requested:
            return None
        return _Live(state, partition, int(row["first_offset"]), last)

    def _stop(self, row: Any) -> int:
        """Where a run's history ends as far as applied: its last change if it ended (later
        records of it change nothing), else everything this process applied."""
        live = self._live.get(row["run_id"])
        stop = max(int(row["last_offset"]), live.last_offset if live else 0) + 1
        if row["status"] in LIVE_STATUSES or (live is not None and not live.state.terminal):
            stop = max(stop, self._position.get(int(row["partition_id"]), 0))
        return stop

    # -- waiting ---------------------------------------------------------------------------------

    def caught_up(self) -> bool:
        """Whether the last poll had read everything durable at that time."""
        assert self._reader is not None
        return all(self._reader.lag(tp) == 0 for tp in self._partitions)

    async def sync(self, timeout: float | None = None) -> None:
        """Wait until everything appended before this call has been applied.

        A large backlog is waited for (it is progress); ``timeout`` only bounds the wait when
        a caller asks for a bound (``TimeoutError`` then).
        """
        await self.start()
        # This process's own appends are waited for by offset: a poll's view of a partition's
        # end can predate them (a fetch answered before the append).
        written = {
            tp.partition: end
            for tp in self._partitions
            if (end := self._log.written(tp)) is not None
        }

        def applied() -> bool:
            return (
                self._polls >= target
                and self.caught_up()
                and all(self._read_to.get(p, 0) >= end for p, end in written.items())
            )

        async with self._changed:
            target = self._polls + 2  # a poll that began after this call, then one more
            if self.marks is None:
                await asyncio.wait_for(self._changed.wait_for(applied), timeout)
                return
            await asyncio.wait_for(
                asyncio.gather(self._changed.wait_for(applied), self.marks.sync()), timeout
            )

    async def state(self, run_id: str) -> RunState | None:
        """The run folded from its history as applied so far; ``None`` if the index has none."""
        await self.start()
        async with self._fold_lock:
            live = self._live.get(run_id)
            if live is None:
                row = await self._call(lambda: self.store_().row(run_id))
                live = None if row is None else await self._load(run_id, row)
                if live is None:
                    return None
                self._remember(live)
                self._trim()
            else:
                self._live.move_to_end(run_id)
            return live.state

    async def wait(
        self, run_id: str, predicate: Callable[[RunState], bool], timeout: float | None
    ) -> RunState | None:
        """Wait until run ``run_id`` satisfies ``predicate``; ``None`` on timeout."""
        await self.start()
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            # Woken only when a change of this run satisfies the predicate (tested as it is
            # applied), not at every poll: with many runs awaited at once, each poll re-read
            # all of them. Registered before the state is read, so a change applied in
            # between is tested too.
            changed = self._waiting.add(run_id)
            self._tests[changed] = predicate
            try:
                state = await self.state(run_id)
                if state is not None and predicate(state):
                    return state
                left = None if deadline is None else deadline - loop.time()
                if left is not None and left <= 0:
                    return None
                try:
                    await asyncio.wait_for(changed, left)
                except TimeoutError:
                    return None
            finally:
                self._waiting.forget(run_id, changed)
                self._tests.pop(changed, None)

    def _wake(self, changed: Mapping[str, _Live]) -> None:
        for run_id, live in changed.items():
            for future in self._waiting.of(run_id):
                test = self._tests.get(future)
                if not future.done() and (test is None or _holds(test, live.state)):
                    future.set_result(None)

    # -- reading the rows ------------------------------------------------------------------------

    async def summaries(self, query: RunQuery) -> list[RunState]:
        """The runs ``query`` selects, newest first, as their rows tell them (no tasks).

        A run whose row left out a large value (params, input, output, trigger) is folded
        from its own history instead.
        """
        await self.start()
        rows = await self._call(lambda: self.store_().query(query))
        attributes = await self._call(
            lambda: self.store_().attributes(row["run_id"] for row in rows)
        )
        found: list[RunState] = []
        for row in rows:
            state = None if row_complete(row) else await self.state(row["run_id"])
            if state is None:
                state = summary_state(row)
                state.search_attributes = attributes.get(row["run_id"], {})
            found.append(state)
        return found

    async def running_ids(self) -> set[str]:
        """The ids of the runs that have not ended (running or parked)."""
        await self.start()
        ids: set[str] = set()
        for status in ("parked", *sorted(LIVE_STATUSES)):
            query = RunQuery(status=status, limit=None)
            rows = await self._call(functools.partial(self.store_().query, query))
            ids.update(row["run_id"] for row in rows)
        return ids

    async def summary(self, run_id: str) -> RunState | None:
        """One run as its row tells it (no tasks); ``None`` if unknown."""
        await self.start()
        row = await self._call(lambda: self.store_().row(run_id))
        return None if row is None else summary_state(row)

    async def counts(self, query: RunQuery | None = None) -> dict[str, int]:
        """Runs by status among those ``query`` selects (all runs by default)."""
        await self.start()
        return await self._call(lambda: self.store_().counts(query))

    async def distinct(self, column: str, limit: int = 200) -> list[str]:
        """Distinct workflows, trigger kinds or trigger names in the index."""
        await self.start()
        return await self._call(lambda: self.store_().distinct(column, limit))

    async def ids_starting(self, prefix: str, limit: int = 50) -> list[str]:
        """Run ids starting with ``prefix``, shortest first."""
        await self.start()
        return await self._call(lambda: self.store_().ids_starting(prefix, limit))

    async def trigger_stats(self) -> list[tuple[str, int, RunState]]:
        """Per trigger name: runs it started and its newest run (as its row tells it)."""
        await self.start()
        stats = await self._call(lambda: self.store_().trigger_stats())
        return [(name, runs, summary_state(row)) for name, runs, row in stats]

    async def records(self, run_id: str) -> list[Record]:
        """The history records of ``run_id`` applied so far, oldest first (``[]`` if unknown).

        Read from the run's partition from its first offset: up to its last applied change
        for an ended run, up to what this process applied for a running one.
        """
        await self.start()
        row = await self._call(lambda: self.store_().row(run_id))
        if row is None:
            return []
        return await self._run_records(run_id, row, self._stop(row))

    async def _run_records(self, run_id: str, row: Any, stop: int) -> list[Record]:
        """``run_id``'s records from its first offset up to ``stop``: from the log, or from
        its archive once they left the log (purged here, or gone by the topic's retention)."""
        archived = await self._call(lambda: self.store_().archived(run_id))
        if archived is not None and archived["purged_at"] is not None:
            return await self._read_archive(str(archived["location"]))
        tp = TopicPartition(self._topics.history, int(row["partition_id"]))
        found = await _read_range(self._log, tp, int(row["first_offset"]), stop)
        found = [r for r in found if r.key == run_id]
        if found or row["status"] in LIVE_STATUSES:
            return found
        location = archived["location"] if archived is not None else None
        if location is None and self.archive is not None:
            location = self.archive.location(run_id)
        if location is None:
            return found
        try:
            return await self._read_archive(str(location))
        except ArchiveError:
            return found  # not archived where this process would have put it either

    async def _read_archive(self, location: str) -> list[Record]:
        store = self.archive
        data = await asyncio.to_thread(store.get if store else read_location, location)
        return decode_run(data, location).records

    async def archived(self, run_id: str) -> str | None:
        """Where ``run_id``'s history is archived, or ``None`` if it is not."""
        await self.start()
        row = await self._call(lambda: self.store_().archived(run_id))
        return None if row is None else str(row["location"])

    async def ended_before(self, moment: float, limit: int = 1000) -> list[RunRow]:
        """Ended runs that finished before ``moment``, oldest first, and where they lie."""
        await self.start()
        return await self._call(functools.partial(self.store_().ended_before, moment, limit))

    async def to_archive(
        self, moment: float, limit: int = 1000, partitions: Collection[int] | None = None
    ) -> list[RunRow]:
        """Ended runs that finished before ``moment`` and are not archived yet (of these
        history ``partitions`` only, when given)."""
        await self.start()
        store = self.store_()
        return await self._call(functools.partial(store.to_archive, moment, limit, partitions))

    async def mark_archived(self, archived: list[Archived]) -> None:
        """Record that these runs' histories are verified in their archives: first in the
        marks topic (every index of a file of its own learns it from there), then here."""
        await self.start()
        now = time.time()
        if self.marks is not None and archived:
            ids = [a.run_id for a in archived]
            rows = await self._call(functools.partial(self.store_().mark_source, ids))
            by_id = {a.run_id: a for a in archived}
            topic = self.marks.topic
            await self.marks.publish(
                [encode_mark(topic, row, attrs, by_id[row["run_id"]], now) for row, attrs in rows]
            )
        await self._call(functools.partial(self.store_().mark_archived, archived, now))

    async def unpurged(self, limit: int = 1000) -> list[RunRow]:
        """Archived runs whose records are still in the log."""
        await self.start()
        return await self._call(functools.partial(self.store_().unpurged, limit))

    async def mark_purged(self, run_ids: list[str]) -> None:
        """Record that these archived runs' records left the log."""
        await self.start()
        now = time.time()
        await self._call(functools.partial(self.store_().mark_purged, run_ids, now))

    async def note_unswept(
        self, tasks_ends: Mapping[int, int], archived: Collection[Archived] = ()
    ) -> int:
        """Note the archived runs not noted yet as having blobs to delete, with the task
        queue's end offset per partition now, and the ``archived`` ones with their tasks;
        how many were noted."""
        await self.start()
        ends = _codec.dumps({str(p): o for p, o in tasks_ends.items()}).decode()
        tasks = {a.run_id: _codec.dumps(sorted(a.tasks)).decode() for a in archived}
        now = time.time()
        store = self.store_()
        return await self._call(functools.partial(store.note_unswept, ends, now, tasks))

    async def unswept(
        self,
        limit: int = 1000,
        partitions: Collection[int] | None = None,
        skip: Collection[str] = (),
        starts: Mapping[int, int] | None = None,
    ) -> list[Unswept]:
        """Noted archived runs whose blobs are not deleted yet, oldest noted first (with
        ``starts``, only those whose history records all lie before their partition's start)."""
        await self.start()
        store = self.store_()
        return await self._call(functools.partial(store.unswept, limit, partitions, skip, starts))

    async def mark_swept(self, run_ids: list[str]) -> None:
        """Record that these archived runs' blobs are deleted."""
        await self.start()
        now = time.time()
        await self._call(functools.partial(self.store_().mark_swept, run_ids, now))

    async def sweep_counts(self) -> tuple[int, int]:
        """``(archived runs noted as having blobs, of which deleted)``."""
        await self.start()
        return await self._call(self.store_().sweep_counts)

    async def archive_counts(self) -> tuple[int, int]:
        """``(archived runs, of which purged from the log)``."""
        await self.start()
        return await self._call(self.store_().archive_counts)

    async def total(self) -> int:
        """How many runs the index knows."""
        await self.start()
        return await self._call(lambda: self.store_().total())

    async def applied(self) -> dict[int, int]:
        """Per history partition, the offset of the next record the stored index applies."""
        await self.start()
        stored = await self._call(lambda: self.store_().offsets(self._topics.history))
        return {tp.partition: stored.get(tp.partition, 0) for tp in self._partitions}


def _identity(url: str) -> str:
    """The part of a log URL that names the log (not its options)."""
    return url.partition("?")[0]


def _holds(test: Callable[[RunState], bool], state: RunState) -> bool:
    """Whether ``state`` passes ``test``; a test that raises wakes its waiter (which raises)."""
    try:
        return test(state)
    except Exception:
        return True


def _copy(state: RunState) -> RunState:
    """What the row needs of ``state``, detached: the store thread reads it later.

    The fold replaces the values a row reads (it never changes them in place), except the
    search attributes.
    """
    return dataclasses.replace(state, search_attributes=dict(state.search_attributes))


async def _read_range(log_: EventLog, tp: TopicPartition, start: int, stop: int) -> list[Record]:
    """The records of ``tp`` from offset ``start`` up to, not including, ``stop``."""
    if stop <= start:
        return []
    found: list[Record] = []
    async with log_.reader({tp: start}) as reader:
        wait = 0.0
        while True:
            # no more than the range holds: a run's range is often a few records
            left = stop - reader.position(tp)
            batch = await reader.poll(timeout=wait, max_records=max(1, min(1000, left)))
            for record in batch:
                if record.offset >= stop:
                    return found
                found.append(record)
            if reader.position(tp) >= stop or (not batch and reader.lag(tp) == 0):
                return found
            wait = 0.0 if batch else 0.2
