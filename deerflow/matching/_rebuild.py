"""Where a partition's index is rebuilt from, so a rebuild reads what is live, not all history.

The matching topic only grows: every wait, event and end record stays. Rebuilding an index
from the partition's start would read every wait that ever ended. Instead the index records,
per partition, an offset from which a rebuild finds everything it holds (the bookkeeping
group ``<prefix>.matching.rebuild-from``):

* at least the last :data:`REREAD` records, so a registration or an event delivered again
  within that window still finds the end of its wait and is recognised;
* and no later than the oldest record the index still needs: the registration of its oldest
  live wait, its oldest buffered event.

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

from collections import deque
from typing import Any

import deerflow._codec as _codec
from deerflow.log.base import Message
from deerflow.matching._index import PartitionIndex, Wait

#: records a rebuild reads at least (the window in which a repeat is recognised)
REREAD = 100_000
#: registrations written again per partition and round at most (the rest in later rounds)
CARRY_BATCH = 5_000
#: seconds after which a live wait's registration is written again (well within the 7 days
#: Kafka keeps a topic's records by default)
CARRY_AGE = 86_400.0
#: how far a partition's rebuild offset moves before it is stored again (a commit on Kafka
#: costs a consumer's start)
STORE_STEP = 10_000


def rebuild_group(topic: str) -> str:
    """The bookkeeping group whose offsets are where each partition's rebuild starts."""
    return f"{topic}.rebuild-from"


def registration(wait: Wait) -> dict[str, Any]:
    """The body of a record registering ``wait`` as the router writes it (``cancel_on``
    waits have no node)."""
    body: dict[str, Any] = {
        "k": "wait",
        "id": wait.id,
        "run": wait.run_id,
        "since": wait.earliest,
        "deadline": wait.deadline,
    }
    if wait.node is not None:
        body["node"] = list(wait.node)
    return body


class OffsetClock:
    """When a partition's offsets were read, sampled (one per :data:`TICK` seconds at most)."""

    TICK = 60.0

    def __init__(self) -> None:
        self._samples: deque[tuple[int, float]] = deque()

    def read(self, offset: int, now: float) -> None:
        """``offset`` was the partition's next offset at ``now``."""
        if not self._samples or now - self._samples[-1][1] >= self.TICK:
            self._samples.append((offset, now))

    def before(self, age: float, now: float) -> int:
        """An offset all of whose earlier records were read more than ``age`` seconds ago
        (samples older than that are dropped, but the newest of them)."""
        while len(self._samples) > 1 and now - self._samples[1][1] > age:
            self._samples.popleft()
        oldest = self._samples[0] if self._samples else None
        return oldest[0] if oldest is not None and now - oldest[1] > age else 0


def carried(index: PartitionIndex, topic: str, partition: int, before: int) -> list[Message]:
    """The registrations to write again: live waits registered before offset ``before``,
    oldest first, at most :data:`CARRY_BATCH`."""
    old = index.registered_before(before, CARRY_BATCH)
    return [
        Message(topic=topic, key=w.key, value=_codec.dumps(registration(w)), partition=partition)
        for w in old
    ]


def rebuild_from(index: PartitionIndex, head: int, reread: int = REREAD) -> int:
    """Where a rebuild of the partition, whose next offset is ``head``, must start."""
    start = max(head - reread, 0)
    oldest = index.oldest_offset()
    return start if oldest is None else min(start, oldest)
