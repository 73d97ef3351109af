"""The history checker itself: it passes a clean log, accepts the documented dedupe, and
catches every kind of violation it claims to (so the suite's green means something)."""

from __future__ import annotations

import pytest

from deerflow import Workflow
from deerflow.core import history as h
from deerflow.log.base import TopicPartition
from tests.reliability.history_checker import Entry, check

TP = TopicPartition("t.history", 0)


def chain() -> Workflow:
    wf = Workflow(name="chain")
    wf.task(id="a")(lambda context: None)
    wf.task(id="b", depends_on=["a"])(lambda context: None)
    return wf


def clean(run: str = "r") -> list[h.HistoryEvent]:
    """A correct history of ``chain`` for run ``run``."""
    return [
        h.RunRequested(id=f"{run}:requested", run_id=run, workflow="chain"),
        h.TaskScheduled(id=f"{run}:a:1:scheduled", run_id=run, task_id="a", attempt=1),
        h.TaskCompleted(id=f"{run}:a:1:completed", run_id=run, task_id="a", attempt=1),
        h.TaskScheduled(id=f"{run}:b:1:scheduled", run_id=run, task_id="b", attempt=1),
        h.TaskFailed(id=f"{run}:b:1:failed", run_id=run, task_id="b", attempt=1, error="x"),
        h.TimerStarted(
            id=f"{run}:b:1:timer", run_id=run, timer_id="b1", fire_at=1.0, task_id="b", attempt=1
        ),
        h.TimerFired(id=f"{run}:b1:fired", run_id=run, timer_id="b1"),
        h.TaskScheduled(id=f"{run}:b:2:scheduled", run_id=run, task_id="b", attempt=2),
        h.TaskCompleted(id=f"{run}:b:2:completed", run_id=run, task_id="b", attempt=2),
        h.RunCompleted(id=f"{run}:completed", run_id=run),
    ]


def entries(events: list[h.HistoryEvent]) -> list[Entry]:
    return [Entry(TP, n, e) for n, e in enumerate(events)]


def problems(events: list[h.HistoryEvent], **kwargs: object) -> list[str]:
    return check(entries(events), {"chain": chain()}).problems(**kwargs)  # type: ignore[arg-type]


def test_a_clean_log_passes_and_the_documented_dedupe_is_counted_not_blamed():
    events = clean()
    noisy = [*events[:3], events[0], events[2], *events[3:], events[8], events[2]]
    result = check(entries(noisy), {"chain": chain()})
    assert result.problems(["r"], exact=True) == []
    assert result.repeats == 4
    assert result.runs["r"].completed == ["a", "b"]


def test_a_late_second_outcome_of_a_finished_attempt_is_not_a_violation():
    late = h.TaskFailed(id="r:b:2:failed", run_id="r", task_id="b", attempt=2, error="again")
    assert problems([*clean(), late]) == []


@pytest.mark.parametrize(
    ("mutate", "complaint"),
    [
        (
            lambda ev: [*ev, h.RunRequested(id="r:requested-again", run_id="r", workflow="chain")],
            "2 distinct RunRequested",
        ),
        (
            lambda ev: [*ev, h.RunFailed(id="r:failed", run_id="r", error="x")],
            "2 distinct terminal events",
        ),
        (lambda ev: ev[:-1], "ended running"),
        (
            lambda ev: [
                *ev,
                h.TaskScheduled(id="r:c:1:scheduled", run_id="r", task_id="c", attempt=1),
            ],
            "after the terminal event",
        ),
        (lambda ev: [ev[1], ev[0], *ev[2:]], "first record is TaskScheduled"),
        (
            lambda ev: [
                *ev[:7],
                h.TaskScheduled(id="r:b:3:scheduled", run_id="r", task_id="b", attempt=3),
                *ev[8:],
            ],
            "have holes",
        ),
    ],
)
def test_each_kind_of_violation_is_caught(mutate, complaint):
    found = problems(mutate(clean()))
    assert any(complaint in p for p in found), found


def test_a_missing_or_unexpected_run_is_caught():
    assert any("not in the log" in p for p in problems(clean(), expected=["r", "lost"]))
    assert any("was not expected" in p for p in problems(clean(), expected=[], exact=True))
