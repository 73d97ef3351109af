"""Which instants a :class:`~deerflow.events.Schedule` fires at, and which of them are due.

Pure arithmetic on Unix timestamps, the current time always passed in: the scheduler, the
backfill and the tests share it, and no test sleeps to see a tick. Cron expressions are read
by cronsim in the schedule's zone, so a tick is a local wall-clock time: on the night the
clocks go forward, a time that does not exist runs once when they jump; on the night they go
back, a time that happens twice runs once (an hourly schedule still runs every hour: 02:00
CEST and 02:00 CET are two instants).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from cronsim import CronSim

from deerflow.events import Schedule

#: Ticks looked at, at most, when a scheduler comes back after downtime (the newest ones).
LOOKBACK = 2 * 1000
#: Ticks one backfill may start, at most.
MAX_BACKFILL = 10_000


def _bounds(spec: Schedule) -> tuple[float, float]:
    start = spec.aware(spec.start).timestamp() if spec.start is not None else -math.inf
    end = spec.aware(spec.end).timestamp() if spec.end is not None else math.inf
    return start, end


def ticks_from(spec: Schedule, after: float) -> Iterator[float]:
    """The schedule's ticks strictly after ``after``, oldest first, within ``start``/``end``."""
    start, end = _bounds(spec)
    after = max(after, start - 1e-6)
    period = spec.period
    if period is not None:
        anchor = start if start != -math.inf else 0.0
        k = math.floor((after - anchor) / period) + 1
        while (tick := anchor + k * period) <= end:
            yield tick
            k += 1
        return
    assert spec.cron is not None
    since = datetime.fromtimestamp(math.floor(after), spec.zone)
    for moment in CronSim(spec.cron, since):
        tick = moment.timestamp()
        if tick > end:
            return
        if tick > after:
            yield tick


def ticks_back(spec: Schedule, now: float) -> Iterator[float]:
    """The schedule's ticks at or before ``now``, newest first, within ``start``/``end``."""
    start, end = _bounds(spec)
    now = min(now, end)
    period = spec.period
    if period is not None:
        anchor = start if start != -math.inf else 0.0
        k = math.floor((now - anchor) / period)
        while (tick := anchor + k * period) >= start:
            yield tick
            k -= 1
        return
    assert spec.cron is not None
    # cronsim's reverse walk starts strictly before its instant, at whole seconds.
    until = datetime.fromtimestamp(math.floor(now) + 1, spec.zone)
    for moment in CronSim(spec.cron, until, reverse=True):
        tick = moment.timestamp()
        if tick < start:
            return
        if tick <= now:
            yield tick


def jitter_of(spec: Schedule, name: str, tick: float) -> float:
    """The delay after ``tick`` its run starts: the same in every process (from a hash)."""
    jitter = spec.jitter_seconds
    if jitter <= 0:
        return 0.0
    digest = hashlib.sha256(f"{name}\x00{tick!r}".encode()).digest()
    return jitter * int.from_bytes(digest[:8], "big") / 2**64


def next_tick(spec: Schedule, now: float) -> float | None:
    """The first tick after ``now``, or ``None`` once the schedule has ended."""
    return next(ticks_from(spec, now), None)


def first_cursor(spec: Schedule, now: float) -> float:
    """Where a schedule served for the first time starts: the ticks after it are handled.

    With ``start`` in the past, just before ``start``: the ticks since then were missed, and
    run as ``catchup`` says (``"all"``: each of the newest ``max_catchup``, as an Airflow DAG
    with ``catchup=True``; ``"latest"``: the newest; ``"skip"``: only one within ``grace``).
    Without ``start`` (or with one to come), at ``now``'s newest tick: no tick before the
    schedule was first served runs (``deerflow schedules backfill`` runs them on demand).
    """
    start, _ = _bounds(spec)
    if start != -math.inf and start <= now:
        return start - 1e-6
    return next(ticks_back(spec, now), now)


@dataclass(frozen=True, slots=True)
class Due:
    """What a scheduler does now: the ticks to run and how far it has handled the schedule.

    Attributes:
        fire: ticks to run, oldest first.
        cursor: the newest tick handled (run or missed on purpose); unchanged if none.
        missed: ticks not run because of ``catchup`` (at least; a long downtime is not
            counted past the lookback).
    """

    fire: tuple[float, ...]
    cursor: float
    missed: int


def due(spec: Schedule, name: str, cursor: float, now: float) -> Due:
    """The ticks after ``cursor`` that are due at ``now``, as ``spec.catchup`` says.

    A tick is due once ``now`` passed it and its jitter. It is on time when it is due for at
    most ``spec.grace`` seconds, else missed (no process served the schedule then):
    ``catchup="skip"`` runs only on-time ticks, ``"latest"`` the newest missed one if none
    is on time, ``"all"`` the newest ``max_catchup`` missed ones and the on-time ones.
    """
    newest_first: list[float] = []
    for tick in ticks_back(spec, now):
        if tick <= cursor or len(newest_first) >= LOOKBACK:
            break
        newest_first.append(tick)
    ticks = newest_first[::-1]
    ready: list[float] = []
    for tick in ticks:
        if tick + jitter_of(spec, name, tick) > now:
            break  # not due yet: neither it nor the ticks after it are handled
        ready.append(tick)
    if not ready:
        return Due((), cursor, 0)
    late = [t for t in ready if now - (t + jitter_of(spec, name, t)) > spec.grace]
    on_time = [t for t in ready if t not in late]
    if spec.catchup == "skip":
        fire = on_time
    elif spec.catchup == "latest":
        fire = on_time or late[-1:]
    else:
        fire = late[-spec.max_catchup :] + on_time
    return Due(tuple(fire), ready[-1], len(ready) - len(fire))


def backfill_ticks(spec: Schedule, first: float, last: float) -> list[float]:
    """The ticks from ``first`` to ``last``, both included, oldest first.

    Raises:
        ValueError: more than :data:`MAX_BACKFILL` ticks, or ``first`` after ``last``.
    """
    if first > last:
        raise ValueError("--from must not be after --to")
    found: list[float] = []
    for tick in ticks_from(spec, first - 1):
        if tick > last:
            break
        if tick >= first:
            if len(found) == MAX_BACKFILL:
                raise ValueError(
                    f"more than {MAX_BACKFILL} ticks between the two times: backfill a "
                    "shorter range at a time"
                )
            found.append(tick)
    return found


def iso(spec: Schedule, tick: float) -> str:
    """``tick`` as ISO-8601 in the schedule's zone."""
    return datetime.fromtimestamp(tick, spec.zone).isoformat()


def utc_iso(tick: float) -> str:
    """``tick`` as ISO-8601 in UTC (the identity of a tick in run ids)."""
    return datetime.fromtimestamp(tick, UTC).isoformat()
