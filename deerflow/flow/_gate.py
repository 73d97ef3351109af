"""One partition of the flow topic, as a gate decides it (pure, bounded).

A gate folds the partition's records in order: a *request* (a run queued, with its key's
limits and its priority) and a *release* (a run ended). Per key it holds only the ids of the
runs running and queued, and the start times of the last ``rate`` admissions. Every decision
depends only on the records and their times (never the gate's clock), so a gate rebuilt from
the partition after a kill or a takeover reaches the same decisions, whose ids are the runs':
appended twice, they change nothing.

A key that never goes idle would hold a rebuild back to its first record: :meth:`carry`
writes the whole key again at the partition's end, and a gate that applies it, the key
untouched since, starts the key from there (a rebuild reads from the carry record on). A key
of many runs is carried in several records of at most :data:`CARRY_CHUNK` runs each, the
running runs and the head of the queue first; until the last of them is applied, the key
admits nothing (what it holds is not all known yet): the admissions the records between them
would have caused are decided as the last one is applied, alike in every gate that reads it.

Order: the queue of a key serves the highest priority first and, within one priority, the
oldest; a run's priority counts as :data:`AGING` seconds of waiting per point, so a run of
lower priority queued long enough ahead goes first (no starvation).
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import deerflow._codec as _codec
from deerflow.core import history as h
from deerflow.core.decide import child_failed
from deerflow.flow._fold import (
    BatchJoined,
    FlowReleased,
    RunAdmitted,
    RunBatched,
    RunDebounced,
    RunDropped,
    RunSuperseded,
    admitted_id,
    batched_id,
    debounced_id,
    dropped_id,
    joined_id,
    released_id,
    run_of,
    superseded_id,
)

#: seconds of waiting one point of priority is worth in a queue's order
AGING = 60.0
#: ids of ended runs a partition remembers, so that a request routed again is not queued again
ENDED_WINDOW = 100_000
#: records between two sweeps of the keys that hold nothing (a key whose runs were all
#: dropped, or admitted by a rate limit alone, has no release to clear it)
SWEEP_EVERY = 1024
#: runs (running and queued) one carry record holds at most: a key holding more is carried in
#: several (a record stays well within a broker's size limit)
CARRY_CHUNK = 1_000


@dataclass(slots=True)
class KeyGate:
    """What a gate holds for one key: running and queued run ids, recent starts."""

    limits: dict[str, Any]
    running: dict[str, None] = field(default_factory=dict)
    #: (order, sequence, run id, queued at): a heap, the next to admit first
    queue: list[tuple[float, int, str, float]] = field(default_factory=list)
    queued: set[str] = field(default_factory=set)
    #: when the last ``rate`` admitted runs start (a rate limit's window)
    starts: deque[float] = field(default_factory=deque)
    #: debounce: the run of the current burst, when it was requested, when the burst began,
    #: when the run starts
    pending: tuple[str, float, float, float] | None = None
    #: batch: the run taking the open batch, and how many runs it holds
    batch: tuple[str, int] | None = None
    #: the offset of the key's first record since it last held nothing (-1: none known):
    #: a rebuild from there finds all it holds
    since: int = -1
    #: the offset and time of the key's last record applied
    last: int = -1
    ts: float = 0.0
    #: the parent task (``ParentRef`` as JSON) of each sub-workflow run the gate may still end
    parents: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: a run at a workflow's second gate: the key of its first, whose slot it holds (freed
    #: here if this gate drops it; a second gate has no concurrency limit, so a run is
    #: decided as it is requested and this holds nothing between two records)
    priors: dict[str, str] = field(default_factory=dict)
    #: a key being restored from several carry records: the offset they were written for and
    #: the number of the next one (none: whole)
    carrying: tuple[int, int] | None = None

    def idle(self, now: float) -> bool:
        """Whether it holds nothing a later decision reads."""
        period = self.limits.get("period") or 0.0
        recent = bool(self.starts) and self.starts[-1] + period > now
        return (
            not self.running
            and not self.queue
            and not recent
            and self.pending is None
            and self.batch is None
            and self.carrying is None
        )


@dataclass(slots=True)
class Counts:
    """What one gate decided, for the ``deerflow_flow_*`` metrics."""

    queued: int = 0
    admitted: int = 0
    delayed: int = 0
    dropped: int = 0
    superseded: int = 0


class PartitionGate:
    """The keys of one partition of the flow topic (see the module docstring)."""

    def __init__(self, *, ended_window: int = ENDED_WINDOW) -> None:
        self.keys: dict[str, KeyGate] = {}
        self._ended: dict[str, None] = {}
        self._ended_window = ended_window
        self._sequence = 0
        self._offset = -1
        self._applied = 0
        self.counts = Counts()

    def __len__(self) -> int:
        return len(self.keys)

    def oldest_offset(self) -> int | None:
        """The offset of the oldest record a rebuild needs: the first of the oldest key that
        holds anything (keys are kept in the order they began); ``None``: none."""
        for gate in self.keys.values():
            return gate.since if gate.since >= 0 else None
        return None

    def carry(self, before: int, limit: int) -> list[tuple[str, bytes]]:
        """The keys (up to ``limit``) that hold something since before offset ``before``,
        oldest first, each as one carry record of all it holds (see the module docstring)."""
        out: list[tuple[str, bytes]] = []
        for key, gate in self.keys.items():
            if len(out) >= limit or gate.since < 0 or gate.since >= before:
                break  # keys are kept in the order of their first record
            if gate.carrying is not None or gate.idle(gate.ts):
                continue
            records = _carried(gate)
            if out and len(out) + len(records) > limit:
                break  # a key is carried whole, in one round
            out.extend((key, _codec.dumps(record)) for record in records)
        return out

    def apply(self, key: str, body: dict[str, Any], offset: int = -1) -> list[h.HistoryEvent]:
        """Fold one record of ``key`` (at ``offset`` in the partition); the admissions and
        drops it decides."""
        self._applied += 1
        self._offset = offset
        ts = float(body.get("ts") or 0.0)
        if self._applied % SWEEP_EVERY == 0:
            self._sweep(ts)
        kind = body.get("k")
        if kind == "carry":
            return self._carry(key, body, offset)
        out = self._decide(key, kind, body, offset)
        gate = self.keys.get(key)
        if gate is not None:
            gate.last, gate.ts = offset, max(gate.ts, ts)
        return out

    def _decide(
        self, key: str, kind: object, body: dict[str, Any], offset: int
    ) -> list[h.HistoryEvent]:
        if kind == "req":
            return self._request(key, body, offset)
        if kind == "rel":
            return self._release(key, str(body["run"]), float(body["ts"]))
        if kind == "due":
            gate = self.keys.get(key)
            run = str(body["run"])
            if gate is not None and gate.pending is not None and gate.pending[0] == run:
                return self._debounced(key, gate, float(body["ts"]))
            if gate is None or gate.batch is None or gate.batch[0] != run:
                return []  # its batch was closed already (full), or it joined another
            return self._close_batch(key, gate, float(body["ts"]))
        return []

    def _carry(self, key: str, body: dict[str, Any], offset: int) -> list[h.HistoryEvent]:
        """A carry record: the first (or only) one of a key restores it, the next ones add to
        it while it is being restored, else they change nothing (the key is carried again)."""
        part = int(body.get("part") or 0)
        if not part:
            self._restore(key, body, offset)
            return []
        held = self.keys.get(key)
        if held is not None and held.carrying == (body.get("at"), part):
            return self._restore_more(key, held, body, offset)
        return []

    def _restore(self, key: str, body: dict[str, Any], offset: int) -> None:
        """A carry record: the key as it was at offset ``at``. Untouched since (or unknown
        here: a rebuild that began after its first record), the key starts from it; else it
        changed meanwhile and is carried again later."""
        held = self.keys.get(key)
        if held is not None and held.last != body.get("at"):
            return
        ended = self._ended
        gate = KeyGate(dict(body.get("limits") or {}), since=offset, last=offset)
        gate.ts = float(body.get("ts") or 0.0)
        gate.running = {str(r): None for r in body.get("running") or [] if r not in ended}
        for order, tie, run, queued_at in body.get("queue") or []:
            if run not in ended and run not in gate.running:
                gate.queue.append((float(order), int(tie), str(run), float(queued_at)))
                gate.queued.add(str(run))
        heapq.heapify(gate.queue)
        gate.starts = deque(float(t) for t in body.get("starts") or [])
        pending = body.get("pending")
        if pending is not None and pending[0] not in ended:
            run, at, began, start = pending
            gate.pending = (str(run), float(at), float(began), float(start))
        batch = body.get("batch")
        if batch is not None and batch[0] not in ended:
            gate.batch = (str(batch[0]), int(batch[1]))
        held_runs = {*gate.running, *gate.queued}
        if gate.pending is not None:
            held_runs.add(gate.pending[0])
        if gate.batch is not None:
            held_runs.add(gate.batch[0])
        gate.parents = {
            run: parent
            for run, parent in (body.get("parents") or {}).items()
            if run in held_runs and isinstance(parent, dict)
        }
        self.keys.pop(key, None)
        self.keys[key] = gate  # the newest first record: last in the order
        if int(body.get("parts") or 1) > 1:
            gate.carrying = (int(body["at"]), 1)

    def _restore_more(
        self, key: str, gate: KeyGate, body: dict[str, Any], offset: int
    ) -> list[h.HistoryEvent]:
        """One more carry record of a key carried in several: its runs join those restored
        (but those that ended meanwhile); the last one lets the key admit again."""
        ended = self._ended
        for run in body.get("running") or []:
            if run not in ended and run not in gate.queued:
                gate.running[str(run)] = None
        for order, tie, run, queued_at in body.get("queue") or []:
            if run not in ended and run not in gate.running and run not in gate.queued:
                heapq.heappush(gate.queue, (float(order), int(tie), str(run), float(queued_at)))
                gate.queued.add(str(run))
        held_runs = {*gate.running, *gate.queued}
        for run, parent in (body.get("parents") or {}).items():
            if run in held_runs and isinstance(parent, dict):
                gate.parents[run] = parent
        assert gate.carrying is not None
        at, part = gate.carrying
        gate.last = offset
        if part + 1 < int(body.get("parts") or 1):
            gate.carrying = (at, part + 1)
            return []
        gate.carrying = None
        return self._admit(key, gate, gate.ts)

    def _request(self, key: str, body: dict[str, Any], offset: int) -> list[h.HistoryEvent]:
        run, ts = str(body["run"]), float(body["ts"])
        gate = self.keys.get(key)
        if gate is None:
            gate = self.keys[key] = KeyGate(dict(body.get("limits") or {}), since=offset)
        else:
            gate.limits = dict(body.get("limits") or gate.limits)  # the latest definition's
        if run in self._ended or run in gate.running or run in gate.queued:
            return []  # routed again
        if gate.pending is not None and gate.pending[0] == run:
            return []
        self.counts.queued += 1
        if isinstance(parent := body.get("parent"), dict):
            gate.parents[run] = parent
        if isinstance(prior := body.get("prior"), str):
            gate.priors[run] = prior
        first_try = run_of(run)[1:] == (0, 0)  # a retry's burst or batch was decided: it queues
        if first_try and gate.limits.get("debounce") is not None:
            return self._debounce(key, gate, run, float(body.get("at") or ts), ts)
        if first_try and gate.limits.get("batch") is not None:
            return self._join(key, gate, run, body, ts)
        order = float(body.get("at") or ts) - AGING * int(body.get("prio") or 0)
        heapq.heappush(gate.queue, (order, self._tie(), run, ts))
        gate.queued.add(run)
        return self._admit(key, gate, ts)

    def _release(self, key: str, run: str, ts: float) -> list[h.HistoryEvent]:
        self._end(run)
        gate = self.keys.get(key)
        if gate is None:
            return []
        gate.running.pop(run, None)
        gate.parents.pop(run, None)
        gate.priors.pop(run, None)
        if gate.pending is not None and gate.pending[0] == run:
            gate.pending = None
        if gate.batch is not None and gate.batch[0] == run:
            gate.batch = None  # its run ended before it started (cancelled)
        if run in gate.queued:  # cancelled while queued: its heap entry is skipped when met
            gate.queued.discard(run)
        out = self._admit(key, gate, ts)
        if gate.idle(ts):
            del self.keys[key]
        return out

    def _admit(self, key: str, gate: KeyGate, now: float) -> list[h.HistoryEvent]:
        """Admit queued runs while the key's concurrency limit allows."""
        out: list[h.HistoryEvent] = []
        if gate.carrying is not None:
            return out  # not all it holds is known yet: its last carry record admits
        limit = gate.limits.get("concurrency")
        while gate.queue and (limit is None or len(gate.running) < limit):
            _, _, run, queued_at = heapq.heappop(gate.queue)
            if run not in gate.queued:
                continue  # it ended while queued
            gate.queued.discard(run)
            out.extend(self._start(key, gate, run, queued_at, now))
        return out

    def _start(
        self, key: str, gate: KeyGate, run: str, queued_at: float, now: float
    ) -> list[h.HistoryEvent]:
        """Admit ``run`` now, at its rate limit's next start, or drop it."""
        rate, period = gate.limits.get("rate"), gate.limits.get("period")
        prior = gate.priors.pop(run, None)
        start = now
        if rate is not None and period is not None:
            while len(gate.starts) > rate:
                gate.starts.popleft()
            if len(gate.starts) >= rate:
                start = max(now, gate.starts[0] + period)
            if start > now and gate.limits.get("drop"):
                self.counts.dropped += 1
                self._end(run)
                run_id, retry, _ = run_of(run)
                reason = f"rate limit of {key}: {rate} runs per {period:g}s exceeded"
                dropped = RunDropped(
                    id=dropped_id(run_id, retry), run_id=run_id, ts=now, reason=reason
                )
                out: list[h.HistoryEvent] = [dropped]
                if prior is not None:  # the slot it holds at its first gate is free
                    out.append(
                        FlowReleased(
                            id=released_id(run_id, retry),
                            run_id=run_id,
                            ts=now,
                            key=prior,
                            retry=retry,
                        )
                    )
                return [*out, *self._report(gate, run, now, f"dropped: {reason}")]
            gate.starts.append(start)
            if len(gate.starts) > rate:
                gate.starts.popleft()
        gate.running[run] = None
        gate.parents.pop(run, None)  # admitted: it reports to its parent as it ends
        self.counts.admitted += 1
        if start > now:
            self.counts.delayed += 1
        run_id, retry, stage = run_of(run)
        admitted = RunAdmitted(
            id=admitted_id(run_id, retry, stage),
            run_id=run_id,
            ts=now,
            not_before=start if start > now else None,
            waited=max(0.0, now - queued_at),
        )
        return [admitted]

    def _debounce(
        self, key: str, gate: KeyGate, run: str, at: float, now: float
    ) -> list[h.HistoryEvent]:
        """Hold ``run`` a period; of two runs within one, the one requested later goes on."""
        period = float(gate.limits["debounce"])
        timeout = gate.limits.get("debounce_timeout")
        pending = gate.pending
        out: list[h.HistoryEvent] = []
        if pending is None or at >= pending[3]:  # a new burst
            began = at
            if pending is not None and _slotted(gate.limits):
                out.extend(self._debounced(key, gate, now))  # the last one's is over
        else:
            began = min(pending[2], at)
            if at < pending[1]:  # routed after a later run of the burst: that one goes on
                gate.pending = (pending[0], pending[1], began, pending[3])
                return self._supersede(key, gate, run, pending[0], now)
            out.extend(self._supersede(key, gate, pending[0], run, now))
        start = at + period if timeout is None else min(at + period, began + float(timeout))
        gate.pending = (run, at, began, start)
        if _slotted(gate.limits):  # it takes a slot once its burst is over
            out.append(RunDebounced(id=debounced_id(run), run_id=run, ts=now, not_before=start))
            return out
        self.counts.admitted += 1
        out.append(RunAdmitted(id=admitted_id(run), run_id=run, ts=now, not_before=max(start, now)))
        return out

    def _debounced(self, key: str, gate: KeyGate, now: float) -> list[h.HistoryEvent]:
        """The burst's latest run waited its debounce: it queues for the key's slot."""
        assert gate.pending is not None
        run, at = gate.pending[0], gate.pending[1]
        gate.pending = None  # the next run of the key begins a new burst
        heapq.heappush(gate.queue, (at, self._tie(), run, now))
        gate.queued.add(run)
        return self._admit(key, gate, now)

    def _join(
        self, key: str, gate: KeyGate, run: str, body: dict[str, Any], now: float
    ) -> list[h.HistoryEvent]:
        """Open a batch with ``run``, or add it to the open one (closed once full)."""
        size = int(gate.limits["batch"])
        if gate.batch is None:
            gate.batch = (run, 1)
            return self._close_batch(key, gate, now) if size <= 1 else []
        leader, count = gate.batch
        self._end(run)
        member = dict(body.get("member") or {"run_id": run})
        out: list[h.HistoryEvent] = [
            BatchJoined(id=joined_id(leader, run), run_id=leader, ts=now, member=member),
            RunBatched(id=batched_id(run), run_id=run, ts=now, into=leader),
        ]
        # a sub-workflow run's parent task hears of its batch's run as that one ends
        gate.parents.pop(run, None)
        gate.batch = (leader, count + 1)
        if count + 1 >= size:
            out.extend(self._close_batch(key, gate, now))
        return out

    def _close_batch(self, key: str, gate: KeyGate, now: float) -> list[h.HistoryEvent]:
        """Close the open batch: its run queues for the key's concurrency and rate limits, if
        any (else it is admitted at once), and starts with the runs it holds."""
        assert gate.batch is not None
        leader = gate.batch[0]
        gate.batch = None
        heapq.heappush(gate.queue, (now, self._tie(), leader, now))
        gate.queued.add(leader)
        return self._admit(key, gate, now)

    def _supersede(
        self, key: str, gate: KeyGate, run: str, by: str, now: float
    ) -> list[h.HistoryEvent]:
        self._end(run)
        self.counts.superseded += 1
        reason = f"debounce of {key}: superseded by run {by}"
        superseded = RunSuperseded(id=superseded_id(run), run_id=run, ts=now, reason=reason, by=by)
        return [superseded, *self._report(gate, run, now, f"superseded: {reason}")]

    @staticmethod
    def _report(gate: KeyGate, run: str, now: float, what: str) -> list[h.HistoryEvent]:
        """A sub-workflow run the gate ended: its parent's task fails (not to be retried:
        the gate decided the run is not to run), as it would had the run ended itself."""
        parent = gate.parents.pop(run, None)
        if parent is None:
            return []
        ref = h.ParentRef.model_validate(parent)
        return [
            child_failed(ref, now, f"sub-workflow run {run_of(run)[0]} {what}", retriable=False)
        ]

    def _tie(self) -> int:
        """What orders two queue entries of one order: the offset of the record that queued
        them (the same in a rebuild), else (records without offsets) the order they came in."""
        self._sequence += 1
        return self._offset if self._offset >= 0 else self._sequence

    def _sweep(self, now: float) -> None:
        """Forget the keys that hold nothing a later decision reads (as of record time ``now``:
        a gate rebuilt from the same records sweeps alike)."""
        for key in [k for k, gate in self.keys.items() if gate.idle(now)]:
            del self.keys[key]

    def _end(self, run: str) -> None:
        self._ended[run] = None
        while len(self._ended) > self._ended_window:
            del self._ended[next(iter(self._ended))]

    def queued(self) -> int:
        """Runs queued, over all keys."""
        return sum(len(g.queued) for g in self.keys.values())

    def running(self) -> int:
        """Runs admitted and not ended, over all keys."""
        return sum(len(g.running) for g in self.keys.values())


def _slotted(limits: dict[str, Any]) -> bool:
    """Whether runs of the key hold a slot (a concurrency or rate limit) once admitted."""
    return limits.get("concurrency") is not None or limits.get("rate") is not None


def _carried(gate: KeyGate) -> list[dict[str, Any]]:
    """The carry records of ``gate``: all it holds (the running runs and the head of its
    queue first, :data:`CARRY_CHUNK` runs a record), and the offset of its last record."""
    runs: list[tuple[str, list[Any] | None]] = [(run, None) for run in gate.running]
    queue = sorted(entry for entry in gate.queue if entry[2] in gate.queued)
    runs += [(entry[2], list(entry)) for entry in queue]
    chunks = [runs[i : i + CARRY_CHUNK] for i in range(0, len(runs), CARRY_CHUNK)] or [[]]
    records: list[dict[str, Any]] = []
    for part, chunk in enumerate(chunks):
        record: dict[str, Any] = {
            "k": "carry",
            "at": gate.last,
            "running": [run for run, entry in chunk if entry is None],
            "queue": [entry for _, entry in chunk if entry is not None],
            "parents": {run: gate.parents[run] for run, _ in chunk if run in gate.parents},
        }
        if part == 0:
            record.update(
                ts=gate.ts,
                limits=gate.limits,
                starts=list(gate.starts),
                pending=None if gate.pending is None else list(gate.pending),
                batch=None if gate.batch is None else list(gate.batch),
            )
            if gate.pending is not None and gate.pending[0] in gate.parents:
                record["parents"][gate.pending[0]] = gate.parents[gate.pending[0]]
            if gate.batch is not None and gate.batch[0] in gate.parents:
                record["parents"][gate.batch[0]] = gate.parents[gate.batch[0]]
        if len(chunks) > 1:
            record.update(part=part, parts=len(chunks))
        records.append(record)
    return records
