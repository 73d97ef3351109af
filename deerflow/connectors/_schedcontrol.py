"""Control of schedules from any process: list them, pause, resume, backfill."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

from deerflow.connectors._schedbook import ScheduleBook, ScheduleState, state_message
from deerflow.connectors._schedentries import (
    RUNNING,
    Clock,
    ScheduleEntry,
    ensure_schedules_topic,
    read_book,
    schedule_entries,
)
from deerflow.connectors._ticks import backfill_ticks, iso, next_tick
from deerflow.errors import ConnectorError, RunNotFound
from deerflow.runtime import Engine, ScheduleTicks

__all__ = [
    "BACKFILL_PARALLEL",
    "BackfillRefused",
    "BackfillResult",
    "ScheduleControl",
    "ScheduleInfo",
    "ScheduleNotFound",
]

#: Runs one backfill keeps running at once by default.
BACKFILL_PARALLEL = 4


class ScheduleNotFound(ConnectorError):
    """No schedule has the name asked for."""

    retriable = False


class BackfillRefused(ConnectorError):
    """A backfill's range is reversed or holds too many ticks."""

    retriable = False


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
        source = RUNNING.get(self.engine)
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
