"""A workflow's schedules as entries under their trigger names, and the schedules topic
they keep their state on."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from deerflow.connectors._schedbook import ScheduleBook, schedules_topic
from deerflow.connectors._ticks import jitter_of, utc_iso
from deerflow.connectors.base import RunRequest, run_id_for
from deerflow.core import WorkflowDef
from deerflow.events import Schedule, ScheduleTickEvent, trigger_name
from deerflow.log.base import TopicPartition
from deerflow.runtime import Engine

if TYPE_CHECKING:
    from deerflow.connectors.schedule import ScheduleSource

__all__ = [
    "PARTITIONS",
    "RUNNING",
    "Clock",
    "ScheduleEntry",
    "ensure_schedules_topic",
    "read_book",
    "schedule_entries",
]

#: Partitions of the schedules topic (how many processes can share the firing).
PARTITIONS = 4

Clock = Callable[[], float]


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
RUNNING: weakref.WeakKeyDictionary[Engine, ScheduleSource] = weakref.WeakKeyDictionary()
