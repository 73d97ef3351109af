"""Property tests of the fold's bounded dedupe: a run keeps few ids, and repeats fold once.

A run's state keeps the ids of only its last ``SEEN_LIMIT`` events of the types whose repeats
are known by id; the others are ignored by their content. Here the bound is set to 8 and long
histories (a simulated run plus up to 200 events known by id: search attributes set back and
forth, parking and resuming) get repeats injected:

* of an event ignored by content, anywhere after it;
* of an event known by id, within the producer-retry distance: fewer than ``SEEN_LIMIT`` other
  events known by id between the original and the repeat (a redelivery, or an append retried
  after an ambiguous failure, comes back that soon).

Property: the noisy history folds to exactly the state the clean one folds to, whose ``seen``
holds at most the bound. And a repeat known by id arriving after the window is folded again:
that is the limit the documentation states.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deerflow import Workflow
from deerflow.core import history as h
from deerflow.core import repeats
from deerflow.core.decide import advance, decide
from deerflow.core.state import BY_CONTENT, RunState, fold, fold_all
from deerflow.runtime._snapcodec import decode, encode
from tests.engine.test_decide import chain, completed, failed, requested, started
from tests.fuzz.test_fold_properties import NOW, true_history

BOUND = 8


@contextmanager
def seen_limit(limit: int) -> Iterator[None]:
    """The fold keeps ``limit`` ids per run inside the block."""
    before = repeats.SEEN_LIMIT
    repeats.SEEN_LIMIT = limit
    try:
        yield
    finally:
        repeats.SEEN_LIMIT = before


def known_by_id(event: h.HistoryEvent) -> bool:
    """Whether the fold recognises a repeat of ``event`` by its id (see ``BY_CONTENT``)."""
    if isinstance(event, h.TimerStarted):
        return event.task_id is None or event.attempt is None
    return event.type not in BY_CONTENT


def attributes(run_id: str, n: int, name: str, value: int) -> h.SearchAttributesSet:
    return h.SearchAttributesSet(
        id=h.event_id(run_id, "attributes", n),
        run_id=run_id,
        ts=NOW,
        attributes={name: {"kind": "int", "value": value}},
    )


def parked(run_id: str, n: int, reason: str) -> h.RunParked:
    return h.RunParked(id=h.event_id(run_id, "parked", n), run_id=run_id, ts=NOW, reason=reason)


def resumed(run_id: str, n: int) -> h.RunResumed:
    return h.RunResumed(id=h.event_id(run_id, "resumed", n), run_id=run_id, ts=NOW)


def scheduled(run_id: str, task_id: str, attempt: int) -> h.TaskScheduled:
    id_ = h.event_id(run_id, task_id, attempt, "scheduled")
    return h.TaskScheduled(id=id_, run_id=run_id, ts=NOW, task_id=task_id, attempt=attempt)


@st.composite
def long_history(draw: st.DrawFn, run_id: str) -> tuple[Workflow, list[h.HistoryEvent]]:
    """A simulated run with up to 200 events known by id among its records, before its end.

    Values and reasons come from small sets, so the same value is often set again: a repeat
    of an old event would then set back what a later one changed.
    """
    wf, log = draw(true_history(run_id))
    state, last = RunState(run_id=run_id), 0
    while last < len(log) and not state.terminal:  # inserted before the run's end
        fold(state, log[last])
        last += 1
    last -= state.terminal
    for n in range(draw(st.integers(20, 200))):
        kind = draw(st.sampled_from(["attributes", "parked", "resumed"]))
        if kind == "attributes":
            event: h.HistoryEvent = attributes(
                run_id, n, draw(st.sampled_from("ab")), draw(st.integers(0, 2))
            )
        elif kind == "parked":
            event = parked(run_id, n, draw(st.sampled_from(["changed", "removed"])))
        else:
            event = resumed(run_id, n)
        log.insert(draw(st.integers(1, last)), event)
        last += 1
    return wf, log


@st.composite
def with_repeats(draw: st.DrawFn, clean: list[h.HistoryEvent]) -> list[h.HistoryEvent]:
    """``clean`` with repeats: of events ignored by content anywhere after them, of events
    known by id with fewer than ``BOUND`` other such originals in between."""
    noisy = [(event, True) for event in clean]  # (event, whether it is an original)
    for _ in range(draw(st.integers(1, 40))):
        firsts = [i for i, (_, first) in enumerate(noisy) if first]
        source = draw(st.sampled_from(firsts))  # the repeat's distance counts from the original
        original = noisy[source][0]
        end = len(noisy)
        if known_by_id(original):
            between, end = 0, source + 1
            while end < len(noisy):
                event, first = noisy[end]
                if first and known_by_id(event):
                    between += 1
                    if between == BOUND:
                        break
                end += 1
        noisy.insert(draw(st.integers(source + 1, end)), (original, False))
    return [event for event, _ in noisy]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_repeats_within_the_retry_distance_fold_once_with_a_small_bound(
    data: st.DataObject,
) -> None:
    wf, clean = data.draw(long_history("r0"))
    noisy = data.draw(with_repeats(clean))
    with seen_limit(BOUND):
        expected = fold_all("r0", clean)
        folded = fold_all("r0", noisy)
    assert folded == expected
    assert len(folded.seen) <= BOUND
    assert folded.events == expected.events
    assert decide(wf, folded, NOW) == decide(wf, expected, NOW)


def test_a_repeat_known_by_id_after_the_window_is_folded_again() -> None:
    run = "r0"
    start = h.RunRequested(id=h.event_id(run, "requested"), run_id=run, ts=NOW, workflow="w")
    first = attributes(run, 0, "stage", 1)
    later = [attributes(run, n, "stage", 2) for n in range(1, BOUND + 1)]
    with seen_limit(BOUND):
        within = fold_all(run, [start, first, *later[: BOUND - 1], first])
        after = fold_all(run, [start, first, *later, first])
    assert within.search_attributes == {"stage": 2}
    assert after.search_attributes == {"stage": 1}  # the documented limit: folded as new
    assert list(after.seen) == [e.id for e in [*later, first]][-BOUND:]


def test_a_repeat_ignored_by_content_is_ignored_however_late() -> None:
    run = "r0"
    timer = "retry:a:2"
    events: list[h.HistoryEvent] = [
        h.RunRequested(id=h.event_id(run, "requested"), run_id=run, ts=NOW, workflow="w"),
        scheduled(run, "a", 1),
        failed("a", 1, run_id=run),
        h.TimerStarted(
            id=h.event_id(run, timer, "started"),
            run_id=run,
            ts=NOW,
            timer_id=timer,
            task_id="a",
            attempt=2,
            fire_at=NOW + 1,
        ),
        h.TimerFired(id=h.event_id(run, timer, "fired"), run_id=run, ts=NOW, timer_id=timer),
        scheduled(run, "a", 2),
        completed("a", 2, output=2, run_id=run),
    ]
    noise = [attributes(run, n, "n", n) for n in range(10 * BOUND)]
    with seen_limit(BOUND):
        state = fold_all(run, [*events, *noise])
        assert not any(fold(state, event) for event in events)
    assert state.tasks["a"].status == "completed"
    assert state.tasks["a"].output == 2
    assert state.timers == {}
    assert state.events == len(events) + len(noise)
    assert len(state.seen) == BOUND


def test_a_run_with_10k_events_keeps_at_most_the_bound() -> None:
    """Tasks, search attributes, parking: 10,001 events folded, at most SEEN_LIMIT ids kept,
    and a snapshot of a run reading only events known by id stops growing with them."""
    run = "r0"
    state = RunState(run_id=run)
    fold(state, h.RunRequested(id=h.event_id(run, "requested"), run_id=run, ts=NOW, workflow="w"))
    by_id: list[str] = []
    sizes = {}
    for n in range(2000):
        task = f"t{n}"
        steps: list[h.HistoryEvent] = [
            scheduled(run, task, 1),
            completed(task, 1, output=n, run_id=run),
            attributes(run, n, "progress", n),
            parked(run, n, "changed"),
            resumed(run, n),
        ]
        for event in steps:
            assert fold(state, event)
        by_id += [e.id for e in steps[2:]]
    assert state.events == 10_001
    assert list(state.seen) == by_id[-repeats.SEEN_LIMIT :]
    assert state.search_attributes == {"progress": 1999}

    machine = RunState(run_id=run)
    fold(machine, h.RunRequested(id=h.event_id(run, "requested"), run_id=run, ts=NOW, workflow="w"))
    for n in range(10_000):
        assert fold(machine, attributes(run, n, "step", n))
        if n + 1 in (1_000, 10_000):
            sizes[n + 1] = len(encode(machine))
    assert len(machine.seen) == repeats.SEEN_LIMIT
    restored = decode(encode(machine), RunState)  # a snapshot keeps the window, oldest first
    assert list(restored.seen) == list(machine.seen)
    assert not fold(restored, attributes(run, 9_999 - repeats.SEEN_LIMIT + 1, "step", 0))
    assert sizes[10_000] < sizes[1_000] * 1.1, sizes  # ids grew a digit: nothing else


def test_repeats_across_an_operator_retry_fold_once() -> None:
    """A failed run retried: its first try's events come again. Those known by content change
    nothing however late; those an operator retry undoes (the abandon, the skips, the run's
    failure) are known by id, and come within the window here."""
    wf = chain()
    state = started(wf)
    first_try: list[h.HistoryEvent] = [requested(wf), *advance(wf, state, NOW)]
    first_try.append(failed("a", 1, retriable=False))
    assert fold(state, first_try[-1])
    first_try += advance(wf, state, NOW)
    assert state.status == "failed"
    retry = h.RunRetryRequested(id="r1:retry:1", run_id="r1", ts=NOW, retry=1)
    with seen_limit(BOUND):
        assert fold(state, retry)
        second_try = advance(wf, state, NOW)
        assert [(e.type, getattr(e, "attempt", None)) for e in second_try] == [("TaskScheduled", 2)]
        after_retry = copy.deepcopy(state)
        assert not any(fold(state, event) for event in first_try)
        for n in range(10 * BOUND):
            fold(state, attributes("r1", n, "n", n))
        late = [e for e in first_try if not known_by_id(e)]
        assert [e.type for e in late] == ["RunRequested", "TaskScheduled", "TaskFailed"]
        assert not any(fold(state, event) for event in late)
    assert state.status == "running"
    assert state.tasks == after_retry.tasks


def test_a_retry_timer_started_again_after_an_operator_retry_is_a_repeat() -> None:
    """Its task was reopened since, so nothing but its content can tell, however late."""
    run = "r0"
    timer = h.TimerStarted(
        id=h.event_id(run, "retry:a:2", "started"),
        run_id=run,
        ts=NOW,
        timer_id="retry:a:2",
        task_id="a",
        attempt=2,
        fire_at=NOW + 1,
    )
    history: list[h.HistoryEvent] = [
        h.RunRequested(id=h.event_id(run, "requested"), run_id=run, ts=NOW, workflow="w"),
        scheduled(run, "a", 1),
        failed("a", 1, run_id=run),
        timer,
        h.TimerFired(
            id=h.event_id(run, "retry:a:2", "fired"), run_id=run, ts=NOW, timer_id=timer.timer_id
        ),
        h.TaskAbandoned(
            id=h.event_id(run, "a", "abandoned"), run_id=run, ts=NOW, task_id="a", error="boom"
        ),
        h.RunFailed(
            id=h.event_id(run, "failed"), run_id=run, ts=NOW, error="boom", failed_task="a"
        ),
        h.RunRetryRequested(id=h.event_id(run, "retry", 1), run_id=run, ts=NOW, retry=1),
    ]
    state = fold_all(run, history)
    assert state.status == "running" and state.tasks["a"].status == "pending"
    assert not fold(state, timer)
    assert state.timers == {}
