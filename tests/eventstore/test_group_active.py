"""``EventLog.group_active``: whether some process consumes a group now (what ``deerflow runs
send`` asks before waiting for an owner that is not there), on every backend."""

from __future__ import annotations

from deerflow.log.base import EventLog
from tests.eventstore.test_contract import assigned, partitions
from tests.services import unique_name


async def test_a_group_is_active_while_it_has_a_member(event_log: EventLog, topic: str):
    group = unique_name("owners")
    await event_log.ensure_topic(topic, 2)
    assert await event_log.group_active(group) is False

    member = event_log.consumer(group, [topic])
    await member.start()
    try:
        await assigned(member, partitions(topic, 2))
        assert await event_log.group_active(group) is True
    finally:
        await member.stop()
