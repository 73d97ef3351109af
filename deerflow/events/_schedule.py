"""The trigger spec of a clock: a cron expression or a fixed interval."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from pydantic import Field

from deerflow._durations import parse_duration
from deerflow.errors import DefinitionError
from deerflow.events._trigger import EventTrigger

__all__ = ["MAX_CATCHUP", "Schedule"]

#: Missed ticks ``catchup="all"`` runs after downtime, at most (the newest ones).
MAX_CATCHUP = 1000


class Schedule(EventTrigger):
    """Start a run at every tick of a cron expression or a fixed interval.

    Each tick is one run, whatever the number of processes serving the workflow: the run id
    is derived from the schedule's name and the tick, and the schedule is fired by the one
    process its partition of the schedules topic is assigned to in the consumer group.

    Attributes:
        cron: a cron expression (5 fields, or 6 with seconds first; ``L``, ``#`` and names as
            cronsim reads them), in ``timezone``.
        every: a fixed interval instead: ``"30s"``, ``"5m"``, ``"1h"``, ``"1d"`` or seconds;
            ticks fall on multiples of it from ``start`` (default the Unix epoch).
        timezone: the IANA zone ``cron`` is read in (``"Europe/Paris"``); default UTC.
        jitter: up to this long (``"30s"``, seconds) after its tick a run starts, the same
            delay for a tick in every process (derived from the tick); spreads load.
        start: no tick before this instant (a naive datetime is in ``timezone``). In the
            past when the schedule is first served, the ticks since then count as missed
            (``catchup`` says which run); without it, a new schedule begins at its next tick.
        end: no tick after this instant.
        catchup: what runs when ticks were missed (no process served the schedule, or the
            engine ran ``max_running`` runs): ``"skip"`` none of them, ``"latest"`` (default)
            only the newest, ``"all"`` each of them, at most ``max_catchup`` (the newest).
        max_catchup: the bound on ``catchup="all"``.
        grace: seconds a tick may be late and still be on time (not missed).
        params: the params of every run it starts.
    """

    source: ClassVar[str] = "schedule"
    cron: str | None = None
    every: str | float | None = None
    timezone: str = "UTC"
    jitter: str | float = 0.0
    start: datetime | None = None
    end: datetime | None = None
    catchup: Literal["skip", "latest", "all"] = "latest"
    max_catchup: int = Field(default=100, ge=1, le=MAX_CATCHUP)
    grace: float = Field(default=60.0, ge=0)
    params: Mapping[str, Any] | None = None

    def describe(self) -> str:
        """See :meth:`EventTrigger.describe`."""
        return "schedule"

    def listens_to(self) -> str:
        """See :meth:`EventTrigger.listens_to`: the cron or the interval (:attr:`when`)."""
        return self.when

    @property
    def when(self) -> str:
        """The schedule as a person reads it: ``cron 0 * * * * (Europe/Paris)``, ``every 5m``."""
        if self.cron is not None:
            return f"cron {self.cron} ({self.timezone})"
        return f"every {self.every}"

    @property
    def zone(self) -> ZoneInfo:
        """The time zone (checked by :meth:`attached`)."""
        return ZoneInfo(self.timezone)

    @property
    def period(self) -> float | None:
        """``every`` in seconds, ``None`` for a cron schedule."""
        return None if self.every is None else parse_duration(self.every, "every")

    @property
    def jitter_seconds(self) -> float:
        """``jitter`` in seconds."""
        return parse_duration(self.jitter, "jitter")

    def attached(self, workflow: str) -> None:
        """See :meth:`EventTrigger.attached`: the cron, zone and interval are checked here."""
        problem = self._problem()
        if problem is not None:
            raise DefinitionError(f"workflow {workflow!r}: Schedule({self._shown()}): {problem}")

    def _shown(self) -> str:
        if self.cron is not None:
            return f"cron={self.cron!r}"
        return f"every={self.every!r}" if self.every is not None else ""

    def _problem(self) -> str | None:
        if (self.cron is None) == (self.every is None):
            return "give exactly one of cron= and every="
        try:
            zone = ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            return f"unknown timezone {self.timezone!r} (an IANA name, e.g. 'Europe/Paris')"
        try:
            period = self.period
            jitter = self.jitter_seconds
        except ValueError as exc:
            return str(exc)
        if period is not None and period <= 0:
            return f"every={self.every!r} must be longer than zero"
        if period is not None and jitter >= period:
            return f"jitter={self.jitter!r} must be shorter than the interval"
        if self.cron is not None:
            try:
                CronSim(self.cron, datetime.now(zone))
            except CronSimError as exc:
                return f"invalid cron expression ({exc})"
        if (
            self.start is not None
            and self.end is not None
            and self.aware(self.start) >= self.aware(self.end)
        ):
            return "start= must be before end="
        return None

    def aware(self, moment: datetime) -> datetime:
        """``moment`` with this schedule's zone when it has none."""
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=self.zone)
