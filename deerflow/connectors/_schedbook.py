"""What is known of each schedule: how far it has fired and whether it is paused.

The state lives in the event log, on the ``<prefix>.schedules`` topic, one record per change
keyed by the schedule's name (so all of one schedule's records sit in one partition, the
partition whose owner fires it). Every record carries the whole state as its writer knew it;
folding takes the greatest ``cursor`` (the newest tick handled) and the pause state of the
greatest ``control`` number (each pause or resume counts one up). Out-of-date writers
therefore never move a schedule back, and a compacted topic (only each key's newest record)
still holds the whole state: the owner writes the state again after applying a pause or a
resume someone else wrote.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace
from typing import Any

import deerflow._codec as _codec
from deerflow.log.base import Message, Record

log = logging.getLogger("deerflow.connectors.schedules")


def schedules_topic(prefix: str) -> str:
    """The topic holding the schedules' state, keyed by schedule name."""
    return f"{prefix}.schedules"


def schedulers_group(prefix: str) -> str:
    """The consumer group whose members own (fire) the schedules of their partitions."""
    return f"{prefix}.schedulers"


@dataclass(frozen=True, slots=True)
class ScheduleState:
    """One schedule's durable state.

    Attributes:
        cursor: the newest tick handled (run, or missed on purpose), ``None`` before the
            schedule was first served.
        paused: whether ticks are skipped.
        control: how many pauses and resumes were recorded (orders them).
        since: when the last pause or resume was recorded (ticks before a resume are skipped).
    """

    cursor: float | None = None
    paused: bool = False
    control: int = 0
    since: float | None = None

    def merged(self, other: ScheduleState) -> ScheduleState:
        """The state knowing both ``self`` and ``other``."""
        cursors = [c for c in (self.cursor, other.cursor) if c is not None]
        newer = other if other.control > self.control else self
        return replace(newer, cursor=max(cursors) if cursors else None)

    def as_json(self) -> dict[str, Any]:
        """The record value's fields."""
        return asdict(self)


class ScheduleBook:
    """The state of the schedules named in ``names``, folded from their records.

    Records of other names (schedules no longer defined here) are not kept: memory is bounded
    by the schedules this process knows.
    """

    def __init__(self, names: set[str]) -> None:
        self.names = set(names)
        self.states: dict[str, ScheduleState] = {}

    def get(self, name: str) -> ScheduleState:
        """``name``'s state (the empty state if none was recorded)."""
        return self.states.get(name, ScheduleState())

    def apply(self, record: Record) -> bool:
        """Fold one record; whether it changed the pause state of its schedule."""
        if record.key not in self.names:
            return False
        try:
            data = _codec.loads(record.value)
            state = ScheduleState(
                cursor=None if data["cursor"] is None else float(data["cursor"]),
                paused=bool(data["paused"]),
                control=int(data["control"]),
                since=None if data.get("since") is None else float(data["since"]),
            )
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring an unreadable schedule record at %s:%d", record.tp, record.offset)
            return False
        before = self.get(record.key)
        after = before.merged(state)
        self.states[record.key] = after
        return after.control != before.control


def state_message(topic: str, name: str, state: ScheduleState) -> Message:
    """The record of ``name``'s state (keyed by the name: in the partition that owns it)."""
    return Message(topic=topic, key=name, value=_codec.dumps(state.as_json()))
