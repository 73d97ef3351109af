"""The index: one :class:`~deerflow.matching._index.PartitionIndex` per assigned partition.

An event looks its key up (no scan of the waiting runs); each wait it meets gets its resuming
history event, whose id is the wait's and the event's, so a duplicate resumes nothing. On
assignment a partition's index is rebuilt by reading the partition from where its rebuild
starts (:mod:`._rebuild`), as every :class:`~deerflow.runtime.RebuildingMember` is: records
before the group's committed offset only fill the index, later ones also resume (what a
killed member matched but had not appended); the rebuild runs beside the poll loop. Input is
committed only with the resumes it caused (at least once).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import deerflow._codec as _codec
from deerflow.core import history as h
from deerflow.log.base import Record
from deerflow.matching._index import BUFFER_SECONDS, PartitionIndex, Wait
from deerflow.matching._kind import WAIT_FOR_EVENT, EventMatched, WaitOptions
from deerflow.matching._spec import event_ts, matching_topic
from deerflow.runtime import Engine, RebuildingMember

log = logging.getLogger("deerflow.matching")


def _node(node: Any) -> tuple[str, int, str, str, bool] | None:
    """A registration's ``node`` as the index keeps it: a tuple, its strings interned (a
    workflow's name, version and task ids repeat in every one of its waits)."""
    if node is None:
        return None
    task_id, attempt, workflow, version, where = node
    return (sys.intern(task_id), attempt, sys.intern(workflow), sys.intern(version), where)


class Matcher(RebuildingMember[PartitionIndex]):
    """The index: one :class:`PartitionIndex` per assigned partition of the matching topic."""

    what = "matching"
    #: seconds an event stays buffered for late waits and ``lookback`` (see :mod:`._index`)
    buffer_seconds: float = BUFFER_SECONDS

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine, matching_topic(engine.topics.prefix))
        self.resumed = 0

    @property
    def indexes(self) -> dict[int, PartitionIndex]:
        """The index of each assigned partition rebuilt so far."""
        return self.partitions

    def loop_name(self) -> str:
        """See :meth:`BackgroundService.loop_name`."""
        return "deerflow-matching-index"

    async def _open(self) -> None:
        log_ = self.engine.log
        partitions = await log_.partition_count(self.engine.topics.history)
        await log_.ensure_topic(self.topic, partitions)
        self._consumer = log_.consumer(self.topic, [self.topic], listener=self)
        await self._consumer.start()

    def new_state(self) -> PartitionIndex:
        """An empty index."""
        return PartitionIndex(buffer_seconds=self.buffer_seconds)

    def describe(self, state: PartitionIndex) -> str:
        """See :meth:`RebuildingMember.describe`."""
        return f"{len(state)} waits"

    def after_round(self, now: float) -> None:
        """Waits past their deadline and events past the buffer leave the indexes."""
        for index in self.partitions.values():
            index.expire(now)

    def appended(self, events: list[h.HistoryEvent]) -> None:
        """See :meth:`RebuildingMember.appended`."""
        self.resumed += len(events)
        super().appended(events)

    def apply(self, index: PartitionIndex, record: Record) -> list[h.HistoryEvent]:
        """Apply one matching-topic record; the resuming history events it causes."""
        try:
            body = _codec.loads(record.value)
        except ValueError:
            return []
        kind = body.get("k") if isinstance(body, dict) else None
        key = record.key or ""
        if kind == "wait":
            # ids and keys are one wait's own: interning them would only grow the intern table
            node = _node(body.get("node"))
            wait = Wait(
                body["id"], body["run"], key, body["since"], body["deadline"], node, record.offset
            )
            evicted = index.evicted
            view = index.add(wait, self._accept)
            if index.evicted > evicted:
                log.warning(
                    "matching partition %d holds %d waits: the oldest left the index (its run "
                    "still times out by its own timer)",
                    record.partition,
                    len(index),
                )
            return [] if view is None else [self._resume(wait, view)]
        if kind == "event":
            view = body["event"]
            met = index.event(key, event_ts(view), view, self._accept, record.offset)
            return [self._resume(w, view) for w in met]
        if kind == "end":
            index.end(body["id"])
        return []

    def _accept(self, wait: Wait, view: dict[str, Any]) -> bool:
        """Whether ``view`` passes the wait's ``where`` (waits without one take any)."""
        node = wait.node
        if node is None or not node[4]:
            return True
        task_id, _, workflow, version, _ = node
        wf = self.engine.registry.get(workflow, version)
        if wf is None or task_id not in wf.tasks:
            log.error(
                "run %s waits on %r of %s %s, not loaded here: where= cannot be checked",
                wait.run_id,
                task_id,
                workflow,
                version,
            )
            return False
        where = WAIT_FOR_EVENT.options(wf.get(task_id), WaitOptions).where
        try:
            return bool(where is None or where(view))
        except Exception:
            log.exception(
                "run %s, task %r: where= raised on event %s; not a match",
                wait.run_id,
                task_id,
                view.get("id"),
            )
            return False

    def _resume(self, wait: Wait, view: dict[str, Any]) -> h.HistoryEvent:
        node = wait.node
        event: h.HistoryEvent
        if node is None:
            event = h.RunCancelRequested(
                id=h.event_id(wait.id, view["id"]),
                run_id=wait.run_id,
                reason=f"cancel_on: {view['type']} event {view['id']}",
            )
        else:
            event = EventMatched(
                id=h.event_id(wait.id, view["id"]),
                run_id=wait.run_id,
                task_id=node[0],
                attempt=node[1],
                event=view,
            )
        return event
