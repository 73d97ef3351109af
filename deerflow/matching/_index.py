"""One partition's index of waits, and its buffer of recent events (pure, bounded).

Waits are filed by key (event type, event paths, values: see :mod:`._spec`), so an event finds
the waits it meets with one dict lookup, however many runs wait. A bounded buffer of recent
events per key lets a wait registered after its event arrived still meet it: an event that
happened after the wait began but was routed before it (the two sides come through different
topics), or, with ``lookback``, one that happened up to that long before.

Each wait and buffered event remembers the offset of its record in the partition, so the
index can say where a rebuild must start to find everything it holds (:meth:`PartitionIndex.
oldest_offset`) and which waits are registered so far back that their record should be
written again (:meth:`PartitionIndex.registered_before`).

A registration read after its wait ended (delivered again by the router, or written again by
the carry while the end was on its way) must not bring the wait back in a later rebuild that
starts between the end and that registration. The index notes it (:meth:`PartitionIndex.
stale`) and asks for an ``end`` record to follow it (:meth:`PartitionIndex.carry`); until that
end is read back, the registration pins where a rebuild starts, so every rebuild reads both.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import deerflow._codec as _codec

#: waits one partition holds at most; past it the oldest is dropped (and logged by the caller)
MAX_WAITS = 1_000_000
#: recent events one partition keeps for late waits and ``lookback``, at most ...
MAX_EVENTS = 10_000
#: ... and for at most this long (seconds; a longer ``lookback`` finds what is left)
BUFFER_SECONDS = 3600.0
#: ids of ended waits remembered, so a registration delivered again does not come back
ENDED_WINDOW = 100_000
#: seconds a wait stays after its deadline: its owner's timer decides, not the index's clock
GRACE = 60.0
#: registrations read after their wait ended whose ``end`` record is not read back yet, at most
MAX_STALE = 10_000


@dataclass(slots=True)
class Wait:
    """One registered wait: what resumes it and which events may."""

    id: str
    run_id: str
    key: str
    #: the oldest event time it matches (its start, minus its lookback)
    earliest: float
    deadline: float | None
    #: the waiting node as registered: (task id, attempt, workflow, version, has ``where``);
    #: None for a ``cancel_on`` wait. A tuple of interned strings, not the registration's
    #: decoded body: the index holds many waits for long, so each keeps only what resumes it.
    node: tuple[str, int, str, str, bool] | None
    #: the offset of its newest registration record in the partition (-1: none known)
    offset: int = -1


Accept = Callable[[Wait, dict[str, Any]], bool]


class PartitionIndex:
    """The waits and recent events of one partition of the matching topic."""

    def __init__(
        self,
        *,
        max_waits: int = MAX_WAITS,
        max_events: int = MAX_EVENTS,
        buffer_seconds: float = BUFFER_SECONDS,
    ) -> None:
        self._by_key: dict[str, dict[str, Wait]] = {}
        #: wait id -> key, oldest first (eviction order)
        self._keys: dict[str, str] = {}
        self._deadlines: list[tuple[float, str]] = []
        self._recent: dict[str, deque[tuple[float, dict[str, Any]]]] = {}
        #: (event time, key, offset) of each buffered event, in the order they were read
        self._recent_order: deque[tuple[float, str, int]] = deque()
        self._ended: dict[str, None] = {}
        #: wait id -> (key, offset) of registrations read after their wait ended, oldest first
        self._stale: dict[str, tuple[str, int]] = {}
        self._max_waits = max_waits
        self._max_events = max_events
        self._buffer_seconds = buffer_seconds
        #: waits dropped because the partition was full
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def buffered(self) -> int:
        """Recent events kept."""
        return len(self._recent_order)

    def add(self, wait: Wait, accept: Accept) -> dict[str, Any] | None:
        """Register ``wait``; the oldest buffered event it meets, if any (the wait then ends).

        A registration of a wait already held (delivered again, or written again to move it
        forward in the log) only records its newer offset.
        """
        if wait.id in self._ended:
            self._note_stale(wait)  # delivered again, or written again, after its wait ended
            return None
        if wait.id in self._keys:
            self._moved(wait)
            return None
        for ts, view in self._recent.get(wait.key, ()):
            if self._meets(wait, ts) and accept(wait, view):
                self._remember_end(wait.id)
                return view
        self._by_key.setdefault(wait.key, {})[wait.id] = wait
        self._keys[wait.id] = wait.key
        if wait.deadline is not None:
            heapq.heappush(self._deadlines, (wait.deadline, wait.id))
        while len(self._keys) > self._max_waits:
            oldest = next(iter(self._keys))
            self.end(oldest)
            self.evicted += 1
        return None

    def event(
        self, key: str, ts: float, view: dict[str, Any], accept: Accept, offset: int = -1
    ) -> Iterator[Wait]:
        """The waits ``view`` (of time ``ts``, read at ``offset``) meets, each ended; the
        event is buffered."""
        self._buffer(key, ts, view, offset)
        waits = self._by_key.get(key)
        if not waits:
            return
        for wait in list(waits.values()):
            if self._meets(wait, ts) and accept(wait, view):
                self.end(wait.id)
                yield wait

    def end(self, wait_id: str) -> None:
        """Forget ``wait_id`` (matched, timed out, its run ended); a repeat does nothing."""
        key = self._keys.pop(wait_id, None)
        self._remember_end(wait_id)
        self._stale.pop(wait_id, None)
        if key is None:
            return
        waits = self._by_key.get(key)
        if waits is not None:
            waits.pop(wait_id, None)
            if not waits:
                del self._by_key[key]

    def expire(self, now: float) -> int:
        """Drop waits whose deadline passed more than :data:`GRACE` ago and stale events."""
        dropped = 0
        while self._deadlines and self._deadlines[0][0] < now - GRACE:
            _, wait_id = heapq.heappop(self._deadlines)
            if wait_id in self._keys:
                self.end(wait_id)
                dropped += 1
        self._trim(now)
        return dropped

    def oldest_offset(self) -> int | None:
        """The offset of the oldest record a rebuild needs for what the index holds (the
        oldest registration of a live wait, the oldest buffered event); ``None``: none."""
        found = [
            o
            for o in (
                self._oldest_wait_offset(),
                self._oldest_event_offset(),
                self._oldest_stale_offset(),
            )
            if o >= 0
        ]
        return min(found) if found else None

    def registered_before(self, offset: int, limit: int) -> list[Wait]:
        """Up to ``limit`` live waits whose newest registration is older than ``offset``,
        oldest first."""
        found: list[Wait] = []
        for wait_id, key in self._keys.items():
            wait = self._by_key[key][wait_id]
            if wait.offset >= offset or len(found) >= limit:
                break
            found.append(wait)
        return found

    @property
    def stale(self) -> list[str]:
        """Ids of waits whose registration was read after they ended, oldest first, until an
        ``end`` record read after it retires them."""
        return list(self._stale)

    def carry(self, before: int, limit: int) -> list[tuple[str, bytes]]:
        """The records (key, value) to write at the partition's end (see :class:`~deerflow.
        runtime.Rebuildable`): an ``end`` after each stale registration, then the
        registrations of live waits registered before offset ``before``; ``limit`` at most."""
        ends = [
            (key, _codec.dumps({"k": "end", "id": ident}))
            for ident, (key, _) in list(self._stale.items())[:limit]
        ]
        live = self.registered_before(before, limit - len(ends))
        return [*ends, *((w.key, _codec.dumps(registration(w))) for w in live)]

    def _oldest_wait_offset(self) -> int:
        for wait_id, key in self._keys.items():
            return self._by_key[key][wait_id].offset
        return -1

    def _oldest_stale_offset(self) -> int:
        return next(iter(self._stale.values()))[1] if self._stale else -1

    def _note_stale(self, wait: Wait) -> None:
        if wait.id not in self._stale and wait.offset >= 0:
            self._stale[wait.id] = (wait.key, wait.offset)
            while len(self._stale) > MAX_STALE:
                del self._stale[next(iter(self._stale))]

    def _oldest_event_offset(self) -> int:
        return self._recent_order[0][2] if self._recent_order else -1

    def _moved(self, wait: Wait) -> None:
        """``wait``'s registration was read again at a newer offset: it is now the newest."""
        held = self._by_key[wait.key][wait.id]
        if wait.offset > held.offset:
            held.offset = wait.offset
            self._keys[wait.id] = self._keys.pop(wait.id)  # registration order: oldest first

    @staticmethod
    def _meets(wait: Wait, ts: float) -> bool:
        return ts >= wait.earliest and (wait.deadline is None or ts <= wait.deadline)

    def _buffer(self, key: str, ts: float, view: dict[str, Any], offset: int) -> None:
        self._recent.setdefault(key, deque()).append((ts, view))
        self._recent_order.append((ts, key, offset))
        while len(self._recent_order) > self._max_events:
            self._drop_oldest_event()

    def _trim(self, now: float) -> None:
        while self._recent_order and self._recent_order[0][0] < now - self._buffer_seconds:
            self._drop_oldest_event()

    def _drop_oldest_event(self) -> None:
        _, key, _ = self._recent_order.popleft()
        events = self._recent.get(key)
        if events:
            events.popleft()
            if not events:
                del self._recent[key]

    def _remember_end(self, wait_id: str) -> None:
        self._ended[wait_id] = None
        while len(self._ended) > ENDED_WINDOW:
            del self._ended[next(iter(self._ended))]


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
