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
API and the dashboard (:mod:`deerflow.connectors._schedcontrol`); the schedules as entries and
their topic are in :mod:`deerflow.connectors._schedentries`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import replace

from deerflow.connectors._schedbook import (
    ScheduleBook,
    ScheduleState,
    schedulers_group,
    schedules_topic,
    state_message,
)
from deerflow.connectors._schedcontrol import (
    BACKFILL_PARALLEL,
    BackfillRefused,
    BackfillResult,
    ScheduleControl,
    ScheduleInfo,
    ScheduleNotFound,
)
from deerflow.connectors._schedentries import (
    PARTITIONS,
    RUNNING,
    Clock,
    ScheduleEntry,
    ensure_schedules_topic,
    read_book,
    schedule_entries,
)
from deerflow.connectors._ticks import (
    due,
    first_cursor,
    jitter_of,
    next_tick,
)
from deerflow.connectors.base import PollingSource, RunRequest, backoff_sleep
from deerflow.errors import ConnectorError
from deerflow.log.base import GroupConsumer, LogReader, TopicPartition, partition_for
from deerflow.runtime import Engine, ScheduleTicks

__all__ = [
    "BACKFILL_PARALLEL",
    "PARTITIONS",
    "BackfillRefused",
    "BackfillResult",
    "ScheduleControl",
    "ScheduleEntry",
    "ScheduleInfo",
    "ScheduleNotFound",
    "ScheduleSource",
    "ensure_schedules_topic",
    "read_book",
    "schedule_entries",
]

log = logging.getLogger("deerflow.connectors.schedules")


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
        RUNNING[self.engine] = self

    async def _close(self) -> None:
        if RUNNING.get(self.engine) is self:
            del RUNNING[self.engine]
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
