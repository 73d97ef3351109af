"""A history checker: reads a whole history log and checks each run's exactly-once guarantees.

The pass criteria, per run (counted over *distinct event ids*: a record repeating an event id
seen before is the documented dedupe — redelivered or re-appended events that the fold
ignores — and is counted as a repeat, never as a violation):

* exactly one ``RunRequested``, and it is the run's first record;
* exactly one terminal event (completed, failed, cancelled, compensated, compensation failed);
* nothing new after the terminal event: later records only repeat ids seen before, or are a
  second outcome of an attempt whose first outcome already counted (a redelivered task that ran
  again; the fold keeps the first outcome);
* no gaps: attempt numbers of a task count 1, 2, 3 without holes, and in a run that ended by
  itself (not cancelled) every scheduled attempt has an outcome; with definitions given, a
  completed run completed every task of its definition;

and across the log: every partition's offsets are contiguous from 0, and every expected run id
(an acknowledged trigger) has a run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from deerflow import Workflow
from deerflow.core import history as h
from deerflow.core.state import RunState, fold
from deerflow.log.base import EventLog, TopicPartition


@dataclass(frozen=True, slots=True)
class Entry:
    """One history record: where it is and the event it holds."""

    tp: TopicPartition
    offset: int
    event: h.HistoryEvent


@dataclass
class RunCheck:
    """What the log says about one run, and what is wrong with it."""

    run_id: str
    records: int = 0
    repeats: int = 0
    ignored: int = 0
    requested: set[str] = field(default_factory=set)
    terminals: list[str] = field(default_factory=list)
    #: task ids in the order their completion was folded (the run's effective order)
    completed: list[str] = field(default_factory=list)
    #: task ids in the order they were first scheduled
    scheduled: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    state: RunState | None = None

    @property
    def status(self) -> str:
        """The folded status (``missing`` when the run has no ``RunRequested``)."""
        return "missing" if self.state is None or not self.state.requested else self.state.status


@dataclass
class HistoryCheck:
    """The result of checking a whole history log."""

    runs: dict[str, RunCheck]
    records: int
    offset_gaps: list[str]
    undecodable: int

    @property
    def repeats(self) -> int:
        """Records that repeat an event id of their run (the documented dedupe)."""
        return sum(r.repeats for r in self.runs.values())

    def statuses(self) -> Counter[str]:
        """How many runs ended each way."""
        return Counter(r.status for r in self.runs.values())

    def problems(
        self,
        expected: Iterable[str] | None = None,
        *,
        status: str | None = "completed",
        exact: bool = False,
    ) -> list[str]:
        """Every violation; ``expected`` run ids must exist (all of them and only them if
        ``exact``), and every run must have ended with ``status`` unless it is ``None``."""
        found = list(self.offset_gaps)
        if self.undecodable:
            found.append(f"{self.undecodable} undecodable history records")
        for run in self.runs.values():
            found += [f"run {run.run_id}: {p}" for p in run.problems]
            if status is not None and run.status != status:
                found.append(f"run {run.run_id}: ended {run.status}, expected {status}")
        if expected is not None:
            wanted = set(expected)
            found += [
                f"acknowledged run {rid} is not in the log"
                for rid in sorted(wanted)
                if rid not in self.runs
            ]
            if exact:
                found += [
                    f"run {rid} was not expected" for rid in sorted(self.runs) if rid not in wanted
                ]
        return found

    def assert_ok(
        self,
        expected: Iterable[str] | None = None,
        *,
        status: str | None = "completed",
        exact: bool = False,
        context: str = "",
    ) -> None:
        """Raise ``AssertionError`` listing (the first 20) violations, if any."""
        found = self.problems(expected, status=status, exact=exact)
        if found:
            shown = "\n  ".join(found[:20])
            raise AssertionError(f"{len(found)} history violations {context}\n  {shown}")

    def summary(self) -> str:
        """One line of counts for logs and the reliability report."""
        return (
            f"{len(self.runs)} runs {dict(self.statuses())}, {self.records} records, "
            f"{self.repeats} repeated ids, {sum(r.ignored for r in self.runs.values())} "
            "ignored by the fold"
        )


async def read_history(log: EventLog, topic: str) -> tuple[list[Entry], int, list[str]]:
    """Every record of ``topic``: (decoded entries in log order, undecodable count, gaps)."""
    count = await log.partition_count(topic)
    records = await log.read_partitions({TopicPartition(topic, p): 0 for p in range(count)})
    entries: list[Entry] = []
    undecodable = 0
    gaps: list[str] = []
    for tp, batch in sorted(records.items()):
        offsets = [r.offset for r in batch]
        if offsets != list(range(len(offsets))):
            gaps.append(f"{tp.topic}[{tp.partition}] offsets are not contiguous from 0")
        for record in batch:
            try:
                entries.append(Entry(tp, record.offset, h.decode(record.value)))
            except ValueError:
                undecodable += 1
    return entries, undecodable, gaps


async def check_log(
    log: EventLog, topic: str, workflows: Mapping[str, Workflow] | None = None
) -> HistoryCheck:
    """Read ``topic`` of ``log`` and :func:`check` it."""
    entries, undecodable, gaps = await read_history(log, topic)
    result = check(entries, workflows)
    result.offset_gaps += gaps
    result.undecodable += undecodable
    return result


def check(
    entries: Iterable[Entry],
    workflows: Mapping[str, Workflow] | None = None,
) -> HistoryCheck:
    """Check the runs in ``entries`` (log order within each partition)."""
    by_run: dict[str, list[h.HistoryEvent]] = {}
    total = 0
    for entry in entries:
        by_run.setdefault(entry.event.run_id, []).append(entry.event)
        total += 1
    runs = {rid: check_run(rid, events, workflows or {}) for rid, events in by_run.items()}
    return HistoryCheck(runs=runs, records=total, offset_gaps=[], undecodable=0)


def check_run(
    run_id: str, events: list[h.HistoryEvent], workflows: Mapping[str, Workflow]
) -> RunCheck:
    """Check one run's records, in log order."""
    run = RunCheck(run_id, records=len(events))
    state = run.state = RunState(run_id=run_id)
    seen: set[str] = set()
    outcomes: set[tuple[str, int]] = set()
    scheduled: dict[str, set[int]] = {}
    ended = False
    if events and not isinstance(events[0], h.RunRequested):
        run.problems.append(f"first record is {events[0].type}, not RunRequested")
    for event in events:
        repeat = event.id in seen
        seen.add(event.id)
        run.repeats += repeat
        _count_kind(run, event)
        if ended and not repeat and not _late_outcome(event, outcomes):
            run.problems.append(f"{event.type} {event.id} after the terminal event")
        if not fold(state, event):
            run.ignored += not repeat
            continue
        if isinstance(event, h.TaskScheduled | h.TaskCompleted | h.TaskFailed):
            # An outcome folded before its TaskScheduled implies the scheduling.
            scheduled.setdefault(event.task_id, set()).add(event.attempt)
        if isinstance(event, h.TaskCompleted | h.TaskFailed):
            outcomes.add((event.task_id, event.attempt))
        if (
            isinstance(event, h.TaskScheduled | h.TaskCompleted | h.TaskFailed)
            and event.task_id not in run.scheduled
        ):
            run.scheduled.append(event.task_id)
        if isinstance(event, h.TaskCompleted):
            run.completed.append(event.task_id)
        ended = ended or event.type in h.TERMINAL_TYPES
    _check_counts(run)
    _check_gaps(run, state, scheduled, outcomes, workflows.get(state.workflow))
    return run


def _count_kind(run: RunCheck, event: h.HistoryEvent) -> None:
    if isinstance(event, h.RunRequested):
        run.requested.add(event.id)
    elif event.type in h.TERMINAL_TYPES and event.id not in run.terminals:
        run.terminals.append(event.id)


def _late_outcome(event: h.HistoryEvent, outcomes: set[tuple[str, int]]) -> bool:
    """A second outcome of an attempt whose first outcome already counted."""
    return (
        isinstance(event, h.TaskCompleted | h.TaskFailed)
        and (event.task_id, event.attempt) in outcomes
    )


def _check_counts(run: RunCheck) -> None:
    if len(run.requested) != 1:
        run.problems.append(f"{len(run.requested)} distinct RunRequested events")
    if len(run.terminals) != 1:
        run.problems.append(f"{len(run.terminals)} distinct terminal events {run.terminals}")


def _check_gaps(
    run: RunCheck,
    state: RunState,
    scheduled: dict[str, set[int]],
    outcomes: set[tuple[str, int]],
    wf: Workflow | None,
) -> None:
    for task_id, attempts in scheduled.items():
        if sorted(attempts) != list(range(1, len(attempts) + 1)):
            run.problems.append(f"task {task_id} attempts {sorted(attempts)} have holes")
    if state.terminal and state.status != "cancelled":
        for task_id, attempts in scheduled.items():
            missing = sorted(a for a in attempts if (task_id, a) not in outcomes)
            if missing:
                run.problems.append(f"task {task_id} attempts {missing} have no outcome")
    if wf is not None and state.status == "completed":
        unfinished = [
            t
            for t in wf.order
            if state.tasks.get(t) is None or state.tasks[t].status != "completed"
        ]
        if unfinished:
            run.problems.append(f"completed with tasks {unfinished} not completed")
