"""Pure parts, without an event loop: map-reduce plans and the per-run concurrency limit."""

from __future__ import annotations

import pytest

from deerflow import Workflow
from deerflow.core import history as h
from deerflow.core.decide import advance
from deerflow.core.state import RunState, fold
from deerflow.patterns._mrplan import plan_map_reduce, split_evenly


def _by_id(specs):
    return {s["id"]: s for s in specs}


def test_partitions_are_grouped_into_at_most_n_contiguous_map_tasks():
    specs = plan_map_reduce(list(range(250)), partitions=100, reduce_parallelism=1)
    maps = [s for s in specs if s["role"] == "map"]
    assert len(maps) == 100
    assert [item for m in maps for item in m["items"]] == list(range(250))
    assert {len(m["items"]) for m in maps} == {2, 3}
    assert specs[-1] == {"id": "reduce", "role": "reduce", "depends_on": [m["id"] for m in maps]}


def test_partial_reduces_each_take_a_slice_of_the_maps_and_feed_the_final_reduce():
    specs = plan_map_reduce(
        [{"file": f"f{i}"} for i in range(100)], partitions=100, reduce_parallelism=10
    )
    combines = [s for s in specs if s["role"] == "combine"]
    assert len(combines) == 10
    assert all(len(c["depends_on"]) == 10 for c in combines)
    covered = [dep for c in combines for dep in c["depends_on"]]
    assert covered == [s["id"] for s in specs if s["role"] == "map"]
    assert specs[-1]["depends_on"] == [c["id"] for c in combines]


def test_every_dependency_names_an_earlier_spec_and_ids_are_unique():
    specs = plan_map_reduce(list(range(37)), partitions=9, reduce_parallelism=4)
    seen: set[str] = set()
    for spec in specs:
        assert spec["id"] not in seen
        assert set(spec.get("depends_on", [])) <= seen
        seen.add(spec["id"])


@pytest.mark.parametrize(
    ("items", "partitions", "parallelism", "maps", "combines"),
    [
        (0, 10, 4, 0, 0),  # nothing to map: the final reduce sees []
        (3, 100, 10, 3, 3),  # fewer partitions than asked: one map each, one combine each
        (5, None, 1, 5, 0),  # no partitions=: one map task per partition
        (1, 4, 8, 1, 0),  # one map: no partial layer
    ],
)
def test_plan_sizes_at_the_edges(items, partitions, parallelism, maps, combines):
    specs = plan_map_reduce(list(range(items)), partitions, parallelism)
    roles = [s["role"] for s in specs]
    assert roles.count("map") == maps
    assert roles.count("combine") == combines
    assert roles[-1] == "reduce" and roles.count("reduce") == 1


def test_split_evenly_covers_the_range_in_order():
    slices = split_evenly(10, 3)
    assert [list(s) for s in slices] == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]


# -- Workflow(max_parallel=...) in the decider ---------------------------------------------------


def _requested(wf: Workflow) -> RunState:
    state = RunState(run_id="r")
    fold(
        state,
        h.RunRequested(
            id="r:requested",
            run_id="r",
            workflow=wf.name,
            version=wf.version,
            fingerprint=wf.fingerprint(),
        ),
    )
    return state


def _scheduled(events):
    return [e.task_id for e in events if isinstance(e, h.TaskScheduled)]


def _complete(state: RunState, task_id: str, **extra) -> None:
    attempt = state.tasks[task_id].attempts
    assert fold(
        state,
        h.TaskCompleted(
            id=f"r:{task_id}:{attempt}:completed",
            run_id="r",
            task_id=task_id,
            attempt=attempt,
            **extra,
        ),
    )


def test_a_run_limit_dispatches_no_more_than_max_parallel_independent_tasks():
    wf = Workflow(name="limited", max_parallel=2)
    for name in "abcde":
        wf.task(id=name)(lambda context: None)
    state = _requested(wf)
    assert _scheduled(advance(wf, state, 0.0)) == ["a", "b"]
    assert _scheduled(advance(wf, state, 0.0)) == []
    _complete(state, "a")
    assert _scheduled(advance(wf, state, 0.0)) == ["c"]
    assert state.running == 2


def test_a_run_limit_also_bounds_the_children_of_a_fan_out():
    wf = Workflow(name="limited_fanout", max_parallel=3)
    wf.task(id="split")(lambda context: list(range(1000)))
    wf.parallel_tasks(id="work", depends_on=["split"])(lambda item, context: item)
    state = _requested(wf)
    assert _scheduled(advance(wf, state, 0.0)) == ["split"]
    _complete(state, "split", output=list(range(1000)))
    assert _scheduled(advance(wf, state, 0.0)) == ["work"]
    _complete(state, "work", expansion=[{"id": str(i), "item": i} for i in range(1000)])
    assert _scheduled(advance(wf, state, 0.0)) == ["work/0", "work/1", "work/2"]
    _complete(state, "work/1")
    assert _scheduled(advance(wf, state, 0.0)) == ["work/3"]


def test_without_a_limit_every_ready_child_is_dispatched_at_once():
    wf = Workflow(name="unlimited_fanout")
    wf.task(id="split")(lambda context: [])
    wf.parallel_tasks(id="work", depends_on=["split"])(lambda item, context: item)
    state = _requested(wf)
    advance(wf, state, 0.0)
    _complete(state, "split", output=[])
    advance(wf, state, 0.0)
    _complete(state, "work", expansion=[{"id": str(i), "item": i} for i in range(50)])
    assert len(_scheduled(advance(wf, state, 0.0))) == 50
