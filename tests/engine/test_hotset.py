"""The hot set picks the least recently used idle runs past its limit; the cold store keeps them."""

from __future__ import annotations

from deerflow.core.state import SCHEDULED, RunState, TaskState
from deerflow.runtime._coldruns import ColdRuns
from deerflow.runtime._hotset import HotSet, poll_size
from deerflow.runtime._snapcodec import decode, encode


def waiting(run_id: str) -> RunState:
    state = RunState(run_id=run_id, requested=True, workflow="w")
    state.tasks["gate"] = TaskState(status="waiting", attempts=1)
    return state


def test_the_least_recently_used_idle_runs_past_the_limit_are_picked():
    runs = {f"r{i}": waiting(f"r{i}") for i in range(6)}
    runs["r1"].tasks["work"] = TaskState(status=SCHEDULED, attempts=1)  # in flight
    runs["r2"].status = "completed"  # ended: tombstoned, not evicted
    hot = HotSet(limit=2)
    for run_id in runs:
        hot.touch(run_id)
    hot.touch("r0")  # used last now
    picked = hot.pick(runs, lambda run_id: True)
    assert [s.run_id for s in picked] == ["r3", "r4", "r5", "r0"]


def test_runs_not_evictable_are_skipped_and_a_short_limit_picks_nothing():
    runs = {f"r{i}": waiting(f"r{i}") for i in range(3)}
    hot = HotSet(limit=3)
    for run_id in runs:
        hot.touch(run_id)
    assert hot.pick(runs, lambda run_id: True) == []
    hot.limit = 1
    assert [s.run_id for s in hot.pick(runs, lambda run_id: run_id != "r0")] == ["r1", "r2"]


def test_a_pick_is_a_slice_and_the_next_ones_take_the_rest_in_order():
    runs = {f"r{i}": waiting(f"r{i}") for i in range(10)}
    hot = HotSet(limit=2)
    for run_id in runs:
        hot.touch(run_id)
    slices = []
    while picked := hot.pick(runs, lambda run_id: True, most=3):
        slices.append([s.run_id for s in picked])
        for state in picked:
            del runs[state.run_id]
            hot.discard(state.run_id)
    assert slices == [["r0", "r1", "r2"], ["r3", "r4", "r5"], ["r6", "r7"]]
    assert hot.largest_slice == 3 and hot.peak_in_round == 10 and len(runs) == 2


def test_a_round_folds_no_more_records_than_the_limit_above_a_floor():
    assert [poll_size(n) for n in (1, 100, 500, 2000, 10_000)] == [100, 100, 500, 2000, 2000]


def test_the_cold_store_gives_back_what_it_kept_once_and_forgets_partitions():
    cold = ColdRuns()
    states = [waiting(f"r{i}") for i in range(4)]
    cold.put((s.run_id, i % 2, encode(s)) for i, s in enumerate(states))
    assert len(cold) == 4 and "r1" in cold and cold.count_in(1) == 2
    data = cold.take("r1")
    assert data is not None and decode(data, RunState) == states[1]
    assert cold.take("r1") is None and "r1" not in cold and len(cold) == 3
    assert sorted(cold.ids(0)) == ["r0", "r2"]
    cold.drop([0])
    assert len(cold) == 1 and cold.peek("r3") == encode(states[3]) and cold.peek("r0") is None
    cold.close()
