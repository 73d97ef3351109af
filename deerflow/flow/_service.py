"""The flow-control services: a router that re-keys requests and releases, and the gates.

Both run in every engine whose workflows have flow control (they carry :data:`FLOW`):

* the **router** (group ``<prefix>.flow.router``) reads the history. Each run's
  :class:`~deerflow.flow._fold.RunQueued` becomes a *request*, its
  :class:`~deerflow.flow._fold.FlowReleased` a *release* (and a batch's
  :class:`~deerflow.flow._fold.BatchDue` a *due*), records of the ``<prefix>.flow``
  topic keyed by the gate key (``<workflow>/<key value>``): one key's runs meet in one
  partition, whichever history partitions they come from.
* the **gates** (group ``<prefix>.gates``) hold, per assigned partition of the flow topic, a
  :class:`~deerflow.flow._gate.PartitionGate`, and append its admissions and drops to the
  runs' histories. On assignment a partition's gate is rebuilt beside the poll loop (a
  :class:`~deerflow.runtime.RebuildingMember`) from a bounded window: the last records, and
  back to the first record of the oldest key that holds anything (a run queued or running, a
  rate window, a debounce or a batch). Decisions of records before the group's committed
  offset were appended already, those of later records are appended now (what a killed
  member decided but had not appended). Input is committed only with the decisions it caused
  (at least once; the decisions' ids are the runs', so a repeat changes nothing).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

import deerflow._codec as _codec
from deerflow.core import history as h
from deerflow.flow._fold import BatchDue, FlowReleased, RunQueued, gate_run
from deerflow.flow._gate import PartitionGate
from deerflow.log.base import GroupConsumer, Message, Record, TopicPartition
from deerflow.runtime import Engine, GroupMember, Plugin, RebuildingMember, Service

#: seconds the router's offsets may go uncommitted while it routes nothing
COMMIT_EVERY = 1.0
_TYPES = (b'"RunQueued"', b'"FlowReleased"', b'"BatchDue"')


def flow_topic(engine: Engine) -> str:
    """The topic requests and releases are re-keyed into, by gate key."""
    return f"{engine.topics.prefix}.flow"


class FlowRouter(GroupMember):
    """Re-keys the history's ``RunQueued`` and ``FlowReleased`` into the flow topic."""

    #: most history records concern no gate and cost a byte check: a round takes many, so
    #: that the records it routes wait for fewer writes
    poll_records = 20_000

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.topic = flow_topic(engine)
        #: offsets read past and not committed yet (rounds that routed nothing)
        self._read: dict[TopicPartition, int] = {}
        self._commit_at = 0.0

    def loop_name(self) -> str:
        """See :meth:`BackgroundService.loop_name`."""
        return "deerflow-flow-router"

    async def _open(self) -> None:
        log_, topics = self.engine.log, self.engine.topics
        partitions = await log_.partition_count(topics.history)
        await log_.ensure_topic(self.topic, partitions, keep_forever=True)
        self._consumer = log_.consumer(f"{self.topic}.router", [topics.history])
        await self._consumer.start()

    async def _handle(self, consumer: GroupConsumer, records: list[Record]) -> None:
        last = {r.partition: r for r in records}  # one TopicPartition per partition, not record
        self._read.update({r.tp: r.offset + 1 for r in last.values()})
        out = route(self.topic, records)
        now = time.monotonic()
        if not self._read or (not out and now < self._commit_at):
            # Nothing to route: its offsets wait for the next commit (read again after a
            # restart, they route nothing), and the next round is not held up by a write.
            return
        held = consumer.assignment()
        offsets = {tp: offset for tp, offset in self._read.items() if tp in held}
        await consumer.append_and_commit(self.engine.log, out, offsets)
        self._read.clear()
        self._commit_at = now + COMMIT_EVERY


def route(topic: str, records: Iterable[Record]) -> list[Message]:
    """The flow-topic records history ``records`` become; the requests among them in the
    order the runs were requested (history partitions are read in no order between them:
    a run requested later must not take a free slot first)."""
    routed = list(_routed(topic, records))
    at = [when for _, when in routed if when is not None]
    if not at or at == sorted(at):
        return [message for message, _ in routed]
    requests = iter(sorted((when, i) for i, (_, when) in enumerate(routed) if when is not None))
    return [message if when is None else routed[next(requests)[1]][0] for message, when in routed]


def _routed(topic: str, records: Iterable[Record]) -> Iterator[tuple[Message, float | None]]:
    """Each flow-topic record, with its run's request time if it is a request."""
    queued, released, due = _TYPES
    for record in records:
        value = record.value
        if queued not in value and released not in value and due not in value:
            continue  # most history records concern no gate: a byte check skips them
        try:
            event = h.decode(value)
        except ValueError:
            continue
        body: dict[str, object]
        requested: float | None = None
        if isinstance(event, RunQueued):
            requested = event.requested_at or event.ts
            body = {
                "k": "req",
                "run": gate_run(event.run_id, event.retry, event.stage),
                "ts": event.ts,
                "at": requested,
                "prio": event.priority,
                "limits": event.limits,
            }
            if event.member is not None:
                body["member"] = event.member
            if event.parent is not None:
                body["parent"] = event.parent.model_dump()
            if event.prior is not None:
                body["prior"] = event.prior
        elif isinstance(event, FlowReleased):
            run = gate_run(event.run_id, event.retry, event.stage)
            body = {"k": "rel", "run": run, "ts": event.ts}
        elif isinstance(event, BatchDue):
            body = {"k": "due", "run": event.run_id, "ts": event.ts}
        else:
            continue
        yield Message(topic=topic, key=event.key, value=_codec.dumps(body)), requested


class Gate(RebuildingMember[PartitionGate]):
    """One :class:`PartitionGate` per assigned partition of the flow topic."""

    what = "flow"

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine, flow_topic(engine))

    def loop_name(self) -> str:
        """See :meth:`BackgroundService.loop_name`."""
        return "deerflow-flow-gate"

    async def _open(self) -> None:
        log_ = self.engine.log
        partitions = await log_.partition_count(self.engine.topics.history)
        await log_.ensure_topic(self.topic, partitions, keep_forever=True)
        group = f"{self.engine.topics.prefix}.gates"
        self._consumer = log_.consumer(group, [self.topic], listener=self)
        await self._consumer.start()

    def new_state(self) -> PartitionGate:
        """An empty gate."""
        return PartitionGate()

    def describe(self, state: PartitionGate) -> str:
        """See :meth:`RebuildingMember.describe`."""
        return f"{len(state)} keys, {state.queued()} runs queued, {state.running()} admitted"

    def apply(self, state: PartitionGate, record: Record) -> list[h.HistoryEvent]:
        """Fold one request or release; the admissions and drops it decides."""
        try:
            body = _codec.loads(record.value)
        except ValueError:
            return []
        if not isinstance(body, dict):
            return []
        return state.apply(record.key or "", body, record.offset)

    def queued_runs(self) -> int:
        """Runs queued at this process's gates."""
        return sum(g.queued() for g in self.partitions.values())

    def admitted_runs(self) -> int:
        """Runs admitted and not ended at this process's gates."""
        return sum(g.running() for g in self.partitions.values())


class FlowPlugin(Plugin):
    """Runs the router and a gate in engines whose workflows have flow control."""

    def services(self, engine: Engine) -> Iterable[Service]:
        """The engine's router and gate."""
        return [FlowRouter(engine), Gate(engine)]


FLOW = FlowPlugin()
