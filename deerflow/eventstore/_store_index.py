"""The one rule that decides which records of an event topic count, and the writer's index.

Every stream lives in one partition (it is the record key), so the partition's order is the
stream's order, and every reader applies the same rule to it:

* a unit (one record: an event or an atomic batch) whose first event id was already admitted
  in this stream is a duplicate and is skipped;
* a sequenced unit is admitted when its first sequence number is the stream's version + 1 (or
  the stream is not known yet); the version becomes its last sequence number;
* an unsequenced unit (from a producer that does not number events) is admitted as is.

Writers number a unit from the version they know, append it, and then check where it landed:
if another writer's unit took that version first, the rule makes every reader skip the later
one and its writer is told (it retries, or raises ``ConcurrencyConflict`` when it asked for an
``expected_version``). So optimistic concurrency is exact across processes on every backend:
the log's order is the arbiter. The price is that a losing unit stays in the log, ignored.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

from deerflow.eventstore._store_model import StoredEvent


class _Bounded(OrderedDict[str, int]):
    """A dict that forgets its oldest entries beyond ``limit`` (``None``: unbounded)."""

    def __init__(self, limit: int | None) -> None:
        super().__init__()
        self.limit = limit

    def remember(self, key: str, value: int) -> None:
        self[key] = value
        if self.limit is not None:
            self.move_to_end(key)
            while len(self) > self.limit:
                self.popitem(last=False)


class Admission:
    """Applies the rule to one partition's records in order.

    ``limit`` bounds the streams and ids remembered (long-lived subscribers); a forgotten
    stream is "not known" again, so the bound trades a little precision for memory.
    """

    def __init__(self, limit: int | None = None) -> None:
        self.versions = _Bounded(limit)
        self.ids = _Bounded(limit)

    def version(self, stream: str) -> int:
        """The stream's version: the sequence number of its last admitted event (0: none)."""
        return self.versions.get(stream, 0)

    def admit(self, unit: Sequence[StoredEvent], offset: int) -> bool:
        """Whether ``unit`` (read at ``offset``) counts; remembers it if so."""
        first, last = unit[0], unit[-1]
        if first.id in self.ids:
            return False
        if first.sequence is not None:
            known = self.versions.get(first.stream)
            if known is not None and first.sequence != known + 1:
                return False
            if last.sequence is not None:
                self.versions.remember(first.stream, last.sequence)
        for event in unit:
            self.ids.remember(event.id, offset)
        return True


@dataclass
class StreamInfo:
    """What the writer's index knows of one stream."""

    first_offset: int


@dataclass
class PartitionIndex:
    """Everything admitted in one partition up to ``position``: versions, ids, stream starts.

    Kept by an :class:`EventStore` that writes or reads streams: it learns the partition once
    from its start, then follows it. Memory grows with the events in the partition (one id
    entry each, roughly 100 bytes).
    """

    position: int = 0
    admission: Admission = field(default_factory=Admission)
    streams: dict[str, StreamInfo] = field(default_factory=dict)

    def apply(self, offset: int, unit: Sequence[StoredEvent]) -> bool:
        """Take in the record at ``offset`` (records before ``position`` are ignored)."""
        if offset < self.position:
            return False
        self.position = offset + 1
        if not unit or not self.admission.admit(unit, offset):
            return False
        self.streams.setdefault(unit[0].stream, StreamInfo(first_offset=offset))
        return True

    def skip_to(self, offset: int) -> None:
        """Records before ``offset`` were seen (a read that returned nothing for them)."""
        self.position = max(self.position, offset)

    def version(self, stream: str) -> int:
        """The stream's version as of ``position``."""
        return self.admission.version(stream)

    def admitted_at(self, event_id: str) -> int | None:
        """The offset of the admitted record holding ``event_id``, if any."""
        return self.admission.ids.get(event_id)
