"""Where a partition's index is rebuilt from, so a rebuild reads what is live, not all history.

The matching topic only grows: every wait, event and end record stays. The index is a
:class:`~deerflow.runtime.RebuildingMember`: a rebuild starts from an offset stored per
partition (the bookkeeping group ``<prefix>.matching.rebuild-from``):

* at least the last :data:`REREAD` records, so a registration or an event delivered again
  within that window still finds the end of its wait and is recognised;
* and no later than the oldest record the index still needs: the registration of its oldest
  live wait, its oldest buffered event (:meth:`PartitionIndex.oldest_offset`).

A wait that lives long (a week-long approval) would pin that offset. Its registration is
written again instead, at the partition's end (:func:`carried`), once it is older than the
window or than :data:`CARRY_AGE`; the index then knows it by the newer record and the offset
moves on. Buffered events never pin it for long: they leave the buffer within the hour.

So no record older than :data:`CARRY_AGE` (plus the hour of buffered events) is needed while
the index runs: the topic's time retention (on Kafka the broker's default, 7 days) removes
only records of waits that ended. Memory and SQLite logs keep every record; their rebuilds
read the same bounded span.
"""

from __future__ import annotations

from deerflow.log.base import Message
from deerflow.matching._index import PartitionIndex, registration
from deerflow.runtime.rebuild import (
    CARRY_AGE,
    CARRY_BATCH,
    REREAD,
    STORE_STEP,
    OffsetClock,
    rebuild_from,
    rebuild_group,
)

__all__ = [
    "CARRY_AGE",
    "CARRY_BATCH",
    "REREAD",
    "STORE_STEP",
    "OffsetClock",
    "carried",
    "rebuild_from",
    "rebuild_group",
    "registration",
]


def carried(index: PartitionIndex, topic: str, partition: int, before: int) -> list[Message]:
    """The registrations to write again: live waits registered before offset ``before``,
    oldest first, at most :data:`CARRY_BATCH`."""
    return [
        Message(topic=topic, key=key, value=value, partition=partition)
        for key, value in index.carry(before, CARRY_BATCH)
    ]
