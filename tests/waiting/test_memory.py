"""What a waiting run costs its owner's memory beyond the run's state: goal at most 2 kB.

Measured with tracemalloc on 2,000 runs folded as the orchestrator folds them (``advance``,
the decider and the fold of the events it decides) and, for a deadline, the timer heap's
entry. The same run with its node as a plain task in flight on a worker is the baseline: the
difference is what waiting adds (its events' part of the state, their ids in the run's
window of seen ids, the timer and its heap entry).
"""

from __future__ import annotations

import gc
import heapq
import tracemalloc
import uuid
from collections.abc import Callable
from typing import Any

from deerflow import Workflow
from deerflow.core import history as h
from deerflow.core.decide import advance
from deerflow.core.state import RunState, fold
from deerflow.waiting import SignalReceived

RUNS = 2000
GOAL = 2048


def flow(node: Callable[[Workflow], None]) -> Workflow:
    wf = Workflow(name="memory")

    @wf.task(id="request")
    def request(context):
        return "requested"

    node(wf)

    @wf.task(id="report", depends_on=["go"])
    def report(context):
        return context.tasks["go"].output

    return wf


def plain(wf: Workflow) -> None:
    wf.task(id="go", depends_on=["request"])(lambda context: None)


def signal(wf: Workflow) -> None:
    wf.wait_for_signal(id="go", name="approve", timeout="1h", depends_on=["request"])


def sleep(wf: Workflow) -> None:
    wf.sleep(id="go", duration="10m", depends_on=["request"])


def in_flight(wf: Workflow, signalled: bool = False) -> tuple[RunState, list[Any]]:
    """A run whose ``go`` node was just reached, folded as its owner folds it."""
    run_id = uuid.uuid4().hex
    state = RunState(run_id=run_id)
    fold(state, h.RunRequested(id=h.event_id(run_id, "requested"), run_id=run_id, workflow="m"))
    advance(wf, state, 1.0)
    fold(
        state,
        h.TaskCompleted(
            id=h.event_id(run_id, "request", 1, "completed"),
            run_id=run_id,
            task_id="request",
            attempt=1,
            output="requested",
        ),
    )
    if signalled:  # sent before the node is reached: kept for it
        sent = SignalReceived(
            id=h.event_id(run_id, "signal", "s1"),
            run_id=run_id,
            signal_id=uuid.uuid4().hex,
            name="other",
            data={"by": "ann"},
        )
        fold(state, sent)
    decided = advance(wf, state, 2.0)
    timers = [(e.fire_at, run_id, e.timer_id) for e in decided if isinstance(e, h.TimerStarted)]
    return state, timers


def bytes_per_run(wf: Workflow, signalled: bool = False) -> float:
    """Memory held per run by ``RUNS`` runs in flight (states, and the timer heap)."""
    gc.collect()
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        states: list[RunState] = []
        heap: list[tuple[float, str, str]] = []
        for _ in range(RUNS):
            state, timers = in_flight(wf, signalled)
            states.append(state)
            for timer in timers:
                heapq.heappush(heap, timer)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
    assert all(s.tasks["go"].status in ("scheduled", "waiting") for s in states)
    return held / RUNS


def test_a_waiting_run_costs_at_most_2_kb_beyond_its_state():
    base = bytes_per_run(flow(plain))
    signal_wait = bytes_per_run(flow(signal)) - base
    sleeping = bytes_per_run(flow(sleep)) - base
    kept = bytes_per_run(flow(signal), signalled=True) - bytes_per_run(flow(plain), True)
    print(
        f"\nrun state with its node in flight: {base:.0f} B; beyond it: a wait for a signal "
        f"{signal_wait:.0f} B, a sleep {sleeping:.0f} B, a wait with a signal kept "
        f"{kept:.0f} B"
    )
    assert 0 < signal_wait <= GOAL
    assert 0 < sleeping <= GOAL
    assert 0 < kept <= GOAL


def test_runs_read_from_the_log_share_their_definition_s_shape_and_names():
    wf = flow(signal)
    states = []
    for _ in range(2):
        run_id = uuid.uuid4().hex
        requested = h.RunRequested(
            id=h.event_id(run_id, "requested"),
            run_id=run_id,
            workflow=wf.name,
            fingerprint=wf.fingerprint(),
            shape=wf.shape(),
        )
        state = RunState(run_id=run_id)
        fold(state, h.decode(h.encode(requested)))  # decoded: its own copies of each string
        advance(wf, state, 1.0)
        states.append(state)
    first, second = states
    assert first.shape == wf.shape()
    assert first.shape is second.shape
    assert first.workflow is second.workflow and first.fingerprint is second.fingerprint
    assert [t for t in first.tasks if t in second.tasks] == ["request"]
    assert next(iter(first.tasks)) is next(iter(second.tasks))
