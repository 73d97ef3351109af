"""Schedules (``Schedule(cron=...)``, ``Schedule(every=...)``): one run per tick.

Exactly one run per tick, however many processes serve the workflow:

* **the run id is the tick's**: ``<workflow>-schedule-<hash of name and tick>``, so two
  processes requesting one tick request one run (the engine's idempotent start);
* **one process fires a schedule**: schedules are keyed by name on the ``<prefix>.schedules``
  topic, and the member of the ``<prefix>.schedulers`` consumer group that holds a
  schedule's partition fires it. A process joining or leaving moves partitions, never a
  lock;
* **the state is in the log**: the newest tick handled (the cursor) and the pause state are
  records of that topic (:mod:`deerflow.connectors._schedbook`). Every process follows the
  whole topic; a new owner fires a partition's schedules once it has read it to its end, so
  a restart or a takeover neither repeats a tick nor forgets a pause.

After downtime the missed ticks are run as ``Schedule.catchup`` says (see
:func:`deerflow.connectors._ticks.due`); so are the ticks since ``Schedule.start`` when a
schedule is first served (see :func:`deerflow.connectors._ticks.first_cursor`), and those
that passed while the engine ran ``max_running`` runs (no tick is taken meanwhile).
:class:`ScheduleControl` lists, pauses, resumes and backfills schedules for the CLI, the HTTP
API and the dashboard.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

from deerflow.connectors._schedbook import (
    ScheduleBook,
    ScheduleState,
    schedulers_group,
    schedules_topic,
    state_message,
)
from deerflow.connectors._ticks import (
    backfill_ticks,
    due,
    first_cursor,
    iso,
    jitter_of,
    next_tick,
    utc_iso,
)
from deerflow.connectors.base import PollingSource, RunRequest, backoff_sleep, run_id_for
from deerflow.core import WorkflowDef
from deerflow.errors import ConnectorError, RunNotFound
from deerflow.events import Schedule, ScheduleTickEvent, trigger_name
from deerflow.log.base import GroupConsumer, LogReader, TopicPartition, partition_for
from deerflow.runtime import Engine, ScheduleTicks

log = logging.getLogger("deerflow.connectors.schedules")

#: Partitions of the schedules topic (how many processes can share the firing).
PARTITIONS = 4
#: Runs one backfill keeps running at once by default.
BACKFILL_PARALLEL = 4

Clock = Callable[[], float]


class ScheduleNotFound(ConnectorError):
    """No schedule has the name asked for."""

    retriable = False


class BackfillRefused(ConnectorError):
    """A backfill's range is reversed or holds too many ticks."""

    retriable = False


@dataclass(frozen=True, slots=True)
class ScheduleEntry:
    """A schedule of a workflow, under its trigger name."""

    name: str
    workflow: str
    spec: Schedule

    def run_id(self, tick: float) -> str:
        """The run of ``tick``: the same id in every process, fired or backfilled."""
        return run_id_for(self.workflow, "schedule", f"{self.name}\x00{utc_iso(tick)}")

    def request(self, tick: float, now: float, *, backfill: bool = False) -> RunRequest:
        """The run request of ``tick`` at ``now``."""
        late = max(0.0, now - tick - jitter_of(self.spec, self.name, tick))
        event = ScheduleTickEvent(
            trigger=self.name,
            received_at=now,
            schedule=self.name,
            scheduled_time=datetime.fromtimestamp(tick, self.spec.zone),
            backfill=backfill,
            late=0.0 if backfill else round(late, 6),
        )
        return RunRequest(
            self.workflow, self.run_id(tick), event, params=dict(self.spec.params or {}) or None
        )


def schedule_entries(workflows: Iterable[WorkflowDef]) -> list[ScheduleEntry]:
    """Every schedule of ``workflows``, in definition order."""
    return [
        ScheduleEntry(trigger_name(wf.name, t), wf.name, t)
        for wf in workflows
        for t in wf.triggers
        if isinstance(t, Schedule)
    ]


async def ensure_schedules_topic(engine: Engine) -> tuple[str, int]:
    """The schedules topic (created if missing) and its partition count."""
    topic = schedules_topic(engine.topics.prefix)
    count = await engine.log.ensure_topic(topic, PARTITIONS, keep_forever=True, compact=True)
    return topic, count


async def read_book(
    engine: Engine, names: set[str]
) -> tuple[ScheduleBook, dict[TopicPartition, int]]:
    """The schedules' state as the topic holds it now, and where each partition ends."""
    topic, count = await ensure_schedules_topic(engine)
    book = ScheduleBook(names)
    loaded = await engine.log.read_partitions({TopicPartition(topic, p): 0 for p in range(count)})
    ends: dict[TopicPartition, int] = {}
    for tp, records in loaded.items():
        for record in records:
            book.apply(record)
        ends[tp] = records[-1].offset + 1 if records else 0
    return book, ends


#: The schedule source running on each engine, whose state :class:`ScheduleControl` reads
#: instead of the whole topic (a dashboard in ``deerflow serve``).
_RUNNING: weakref.WeakKeyDictionary[Engine, ScheduleSource] = weakref.WeakKeyDictionary()


class ScheduleSource(PollingSource[float]):
    """Fires the schedules of the partitions this process holds; see the module docstring.

    Args:
        engine: the engine runs are requested on (its log holds the schedules' state).
        entries: the schedules to serve.
        clock: the current time as a Unix timestamp (tests pass their own).
        max_wait: seconds the loop waits at most before looking at the clock again (a tick
            is fired on time by a timer; this bounds how long a clock a test moves is not
            looked at).
    """

    source = "schedule"

    def __init__(
        self,
        engine: Engine,
        entries: Sequence[ScheduleEntry],
        *,
        clock: Clock = time.time,
        max_wait: float = 1.0,
        max_running: int | None = None,
    ) -> None:
        super().__init__(engine, "schedules", max_running=max_running)
        if not entries:
            raise ConnectorError("a schedule source needs at least one schedule", retriable=False)
        self.entries = {e.name: e for e in entries}
        self.clock = clock
        self.max_wait = max_wait
        self.group = schedulers_group(engine.topics.prefix)
        self.topic = schedules_topic(engine.topics.prefix)
        self.book = ScheduleBook(set(self.entries))
        self.fired = 0
        self.missed = 0
        #: rounds in a row no tick was taken, the engine running ``max_running`` runs
        self.held = 0
        self._partitions = 0
        self._consumer: GroupConsumer | None = None
        self._reader: LogReader | None = None
        self._pending: set[TopicPartition] = set()
        self._owned: set[TopicPartition] = set()

    def describe(self) -> str:
        """See :meth:`TriggerSource.describe`."""
        return f"schedules {', '.join(sorted(self.entries))} (group {self.group})"

    @property
    def owned(self) -> list[str]:
        """The schedules this process fires now."""
        parts = {tp.partition for tp in self._owned}
        return sorted(n for n in self.entries if self._partition(n) in parts)

    def _partition(self, name: str) -> int:
        return partition_for(name, self._partitions)

    # -- lifecycle ------------------------------------------------------------------------------

    async def _open(self) -> None:
        """Read the schedules' state, follow it, and join the group that shares them out."""
        self.topic, self._partitions = await ensure_schedules_topic(self.engine)
        self.book, ends = await read_book(self.engine, set(self.entries))
        self._reader = self.engine.log.reader(ends)
        await self._reader.start()
        self._consumer = self.engine.log.consumer(self.group, [self.topic], listener=self)
        await self._consumer.start()
        _RUNNING[self.engine] = self

    async def _close(self) -> None:
        if _RUNNING.get(self.engine) is self:
            del _RUNNING[self.engine]
        for part in (self._consumer, self._reader):
            if part is not None:
                await part.stop()
        self._consumer = self._reader = None
        self._pending.clear()
        self._owned.clear()

    async def on_assigned(self, partitions: frozenset[TopicPartition]) -> None:
        """Fire these partitions' schedules once their state is read to its end."""
        if self._consumer is not None:
            self._consumer.pause(partitions)  # the follower reads them; this only holds them
        self._pending |= partitions

    async def on_revoked(self, partitions: frozenset[TopicPartition]) -> None:
        """Another member fires them from now on."""
        self._pending -= partitions
        self._owned -= partitions

    # -- the loop -------------------------------------------------------------------------------

    async def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                await self.step(self._wait())
            except Exception as exc:  # the loop outlives any store failure; the tick waits
                log.warning("schedules: %r; retrying", exc)
                await backoff_sleep(self.stopping, 1.0)

    def _wait(self) -> float:
        """Seconds until the next tick this process fires is due (at most ``max_wait``)."""
        now = self.clock()
        wait = self.max_wait
        for name in self.owned:
            entry = self.entries[name]
            tick = next_tick(entry.spec, now)
            if tick is not None:
                wait = min(wait, tick + jitter_of(entry.spec, name, tick) - now)
        return max(0.0, wait)

    async def step(self, timeout: float = 0.0) -> int:
        """Follow the state for up to ``timeout`` s, take assigned partitions, fire what is
        due; returns how many runs were requested."""
        assert self._consumer is not None and self._reader is not None
        await self._consumer.poll(timeout=0.0)  # rebalances; its partitions stay paused
        records = await self._reader.poll(timeout=timeout, max_records=1000)
        controlled = {r.key for r in records if self.book.apply(r) and r.key is not None}
        caught_up = {tp for tp in self._pending if self._reader.lag(tp) == 0}
        self._pending -= caught_up
        self._owned |= caught_up
        if caught_up:
            log.info("schedules: firing %s", ", ".join(self.owned) or "none")
        mine = set(self.owned)
        # A pause or resume someone else wrote is written again as the whole state, so the
        # topic's newest record of the schedule holds it (compaction keeps only that one).
        await self._write({n: self.book.get(n) for n in controlled & mine})
        return await self.fire_due()

    async def fire_due(self) -> int:
        """Request the runs of the owned schedules' due ticks; returns how many."""
        now = self.clock()
        requests: list[RunRequest] = []
        updates: dict[str, ScheduleState] = {}
        ticks: list[ScheduleTicks] = []
        if self._held():
            return 0
        for name in self.owned:
            entry, state = self.entries[name], self.book.get(name)
            cursor = state.cursor
            if cursor is None:  # served for the first time
                cursor = first_cursor(entry.spec, now)
                updates[name] = replace(state, cursor=cursor)
            if state.paused:
                continue
            floor = max(cursor, state.since if state.since is not None else -math.inf)
            found = due(entry.spec, name, floor, now)
            if found.cursor <= cursor:
                continue
            requests += [entry.request(tick, now) for tick in found.fire]
            updates[name] = replace(state, cursor=found.cursor)
            if found.fire or found.missed:
                ticks.append(ScheduleTicks(name, entry.workflow, len(found.fire), found.missed))
            if found.missed:
                self.missed += found.missed
                log.info(
                    "schedule %s: %d missed ticks not run (catchup=%r)",
                    name,
                    found.missed,
                    entry.spec.catchup,
                )
        if requests:
            await self.submit(requests)  # durable before the cursor moves past them
            self.fired += len(requests)
        await self._write(updates)
        for handled in ticks:
            self.engine.hooks.on_schedule_ticks(handled)
        return len(requests)

    def _held(self) -> bool:
        """Whether too many runs are running to take a tick now: the ticks passing meanwhile
        are handled once runs ended, the late ones as ``catchup`` says."""
        if not self.saturated():
            self.held = 0
            return False
        if not self.held:
            log.info("schedules: %d runs running; ticks wait", self.max_running)
        self.held += 1
        return True

    async def _write(self, states: dict[str, ScheduleState]) -> None:
        if not states:
            return
        await self.engine.log.append(
            [state_message(self.topic, name, state) for name, state in states.items()]
        )
        for name, state in states.items():
            self.book.states[name] = self.book.get(name).merged(state)

    async def acknowledge(self, items: Sequence[float]) -> None:
        """Nothing to acknowledge: the cursor is written after the runs are requested."""


# -- control: list, pause, resume, backfill --------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScheduleInfo:
    """A schedule as ``deerflow schedules list`` and ``GET /api/schedules`` show it."""

    name: str
    workflow: str
    when: str
    catchup: str
    paused: bool
    last_tick: str | None
    next_tick: str | None

    def as_json(self) -> dict[str, Any]:
        """The API's representation."""
        return asdict(self)


@dataclass(slots=True)
class BackfillResult:
    """What a backfill did: runs started (by status once ended) and ticks that had run."""

    schedule: str
    ticks: int
    started: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    statuses: dict[str, str] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        """Runs started that did not complete."""
        return sum(1 for s in self.statuses.values() if s != "completed")

    def as_json(self) -> dict[str, Any]:
        """The API's representation."""
        return asdict(self)


class ScheduleControl:
    """Lists, pauses, resumes and backfills the schedules of an engine's workflows.

    Any process may use it, not only the one firing: a pause or a resume is a record of the
    schedules topic, applied by the owner within a second.
    """

    def __init__(self, engine: Engine, *, clock: Clock = time.time) -> None:
        self.engine = engine
        self.clock = clock

    @property
    def entries(self) -> dict[str, ScheduleEntry]:
        """The engine's schedules by name."""
        return {e.name: e for e in schedule_entries(self.engine.registry)}

    def entry(self, name: str) -> ScheduleEntry:
        """The schedule ``name``; :class:`ScheduleNotFound` naming the known ones."""
        entries = self.entries
        if name not in entries:
            known = ", ".join(sorted(entries)) or "none"
            raise ScheduleNotFound(f"no schedule named {name!r} (known: {known})")
        return entries[name]

    async def list_schedules(self) -> list[ScheduleInfo]:
        """Every schedule with its state."""
        entries = self.entries
        book = await self._book(set(entries))
        now = self.clock()
        return [self._info(e, book.get(e.name), now) for e in entries.values()]

    async def _book(self, names: set[str]) -> ScheduleBook:
        """The state of ``names``: the running source's (it follows the topic), else read."""
        source = _RUNNING.get(self.engine)
        if source is not None and source.running and names <= source.book.names:
            return source.book
        return (await read_book(self.engine, names))[0]

    def _info(self, entry: ScheduleEntry, state: ScheduleState, now: float) -> ScheduleInfo:
        upcoming = None if state.paused else next_tick(entry.spec, now)
        return ScheduleInfo(
            name=entry.name,
            workflow=entry.workflow,
            when=entry.spec.when,
            catchup=entry.spec.catchup,
            paused=state.paused,
            last_tick=None if state.cursor is None else iso(entry.spec, state.cursor),
            next_tick=None if upcoming is None else iso(entry.spec, upcoming),
        )

    async def pause(self, name: str) -> bool:
        """Pause ``name`` (durable); ``False`` if it was paused already."""
        return await self._control(name, paused=True)

    async def resume(self, name: str) -> bool:
        """Resume ``name``: ticks from now on run, those while it was paused do not;
        ``False`` if it was not paused."""
        return await self._control(name, paused=False)

    async def _control(self, name: str, *, paused: bool) -> bool:
        self.entry(name)
        book = await self._book({name})
        state = book.get(name)
        if state.paused == paused:
            return False
        new = replace(state, paused=paused, control=state.control + 1, since=self.clock())
        topic, _ = await ensure_schedules_topic(self.engine)
        await self.engine.log.append([state_message(topic, name, new)])
        book.states[name] = state.merged(new)  # seen at once here; the owner reads it too
        return True

    def plan(self, name: str, first: datetime, last: datetime) -> list[tuple[float, str]]:
        """The ticks of ``name`` from ``first`` to ``last`` (both included) and their run ids.

        Raises:
            ScheduleNotFound: an unknown schedule.
            BackfillRefused: a reversed range, or one of too many ticks.
        """
        entry = self.entry(name)
        try:
            ticks = backfill_ticks(
                entry.spec, entry.spec.aware(first).timestamp(), entry.spec.aware(last).timestamp()
            )
        except ValueError as exc:
            raise BackfillRefused(f"schedule {name!r}: {exc}") from None
        return [(tick, entry.run_id(tick)) for tick in ticks]

    async def backfill(
        self,
        name: str,
        first: datetime,
        last: datetime,
        *,
        max_parallel: int = BACKFILL_PARALLEL,
        on_end: Callable[[str, str], Awaitable[None] | None] | None = None,
    ) -> BackfillResult:
        """Run the ticks of ``name`` from ``first`` to ``last``, oldest first, at most
        ``max_parallel`` at once, each waited for; ticks whose run exists already (fired,
        or backfilled before) are skipped. Paused or not, the schedule is backfilled.

        Their run ids are the ticks' own, so a backfill repeated, or overlapping what the
        schedule fired, starts no tick twice.
        """
        if max_parallel < 1:
            raise ConnectorError("--max-parallel must be at least 1", retriable=False)
        entry = self.entry(name)
        planned = self.plan(name, first, last)
        result = BackfillResult(name, len(planned))
        queue: Iterator[tuple[float, str]] = iter(planned)

        async def slot() -> None:
            for tick, run_id in queue:
                if await self._exists(run_id):
                    result.skipped.append(run_id)
                    continue
                request = entry.request(tick, self.clock(), backfill=True)
                await self.engine.start_run(
                    entry.workflow,
                    run_id=run_id,
                    params=request.params,
                    trigger=request.event.model_dump(mode="json"),
                )
                result.started.append(run_id)
                self.engine.hooks.on_schedule_ticks(
                    ScheduleTicks(name, entry.workflow, backfilled=1)
                )
                ended = await self.engine.wait(run_id)
                result.statuses[run_id] = ended.status
                if on_end is not None:
                    maybe = on_end(run_id, ended.status)
                    if maybe is not None:
                        await maybe

        await asyncio.gather(*(slot() for _ in range(min(max_parallel, len(planned) or 1))))
        return result

    async def _exists(self, run_id: str) -> bool:
        try:
            await self.engine.get_run(run_id)
        except RunNotFound:
            return False
        return True
