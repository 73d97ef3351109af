"""Property tests of signals: whatever the order of signals, repeats and deadlines, each signal
is taken by at most one node, and a history with any of its records repeated folds to the same
run.

The run has three nodes waiting for the signal ``vote`` (with deadlines). Hypothesis chooses
what the world does next: a signal sent (its id from a small pool, so the same signal is often
sent again), a node's deadline passing, or an earlier record delivered again. The engine's own
``advance`` decides after each step, as a run's owner does.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deerflow import Workflow
from deerflow.core import history as h
from deerflow.core.decide import advance
from deerflow.core.state import RunState, fold
from deerflow.waiting import SignalReceived, WaitEnded

RUN = "r1"
NODES = ("a", "b", "c")


def voting() -> Workflow:
    wf = Workflow(name="voting")
    for node in NODES:
        wf.wait_for_signal(id=node, name="vote", timeout=60)
    return wf


step = st.one_of(
    st.tuples(st.just("signal"), st.integers(0, 4)),
    st.tuples(st.just("deadline"), st.sampled_from(NODES)),
    st.tuples(st.just("repeat"), st.integers(0, 1000)),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(step, max_size=25))
def test_each_signal_is_taken_once_and_repeats_change_nothing(steps):
    wf = voting()
    state = RunState(run_id=RUN)
    history: list[h.HistoryEvent] = [
        h.RunRequested(id=h.event_id(RUN, "requested"), run_id=RUN, workflow="voting")
    ]
    fold(state, history[0])
    history.extend(advance(wf, state, 1.0))
    delivered: list[h.HistoryEvent] = list(history)  # what the log delivers, repeats included
    for kind, arg in steps:
        event: h.HistoryEvent | None
        if kind == "signal":
            event = SignalReceived(
                id=h.event_id(RUN, "signal", f"s{arg}"),
                run_id=RUN,
                signal_id=f"s{arg}",
                name="vote",
                data=arg,
            )
        elif kind == "deadline":
            timer = next((t for t in state.timers if t.startswith(f"wait:{arg}:")), None)
            event = (
                None
                if timer is None
                else h.TimerFired(id=h.event_id(RUN, timer, "fired"), run_id=RUN, timer_id=timer)
            )
        else:
            event = delivered[int(arg) % len(delivered)]  # delivered again
        if event is None:
            continue
        delivered.append(event)
        if fold(state, event):
            history.append(event)
            decided = advance(wf, state, 2.0)
            history.extend(decided)
            delivered.extend(decided)

    taken = [e.signal_id for e in history if isinstance(e, WaitEnded) and e.signal_id]
    assert len(taken) == len(set(taken)), "a signal was taken twice"
    outputs = [state.tasks[n].output for n in NODES if state.tasks[n].status == "completed"]
    assert sorted(o for o in outputs if o is not None) == sorted(int(s[1:]) for s in taken)

    again = RunState(run_id=RUN)
    for event in delivered:  # the log as delivered: every repeat in its place
        fold(again, event)
    for node in NODES:
        assert (again.tasks[node].status, again.tasks[node].output) == (
            state.tasks[node].status,
            state.tasks[node].output,
        )
    assert again.extensions == state.extensions
