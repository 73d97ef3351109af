"""Property: a snapshot of a folded prefix, folded on with the rest, is the fold of everything.

The runs' states after any prefix of a (perturbed: interleaved, duplicated, contradicted) log
go through a partition snapshot's encoding and decoding; folding the rest of the log onto the
decoded states gives, for every run, exactly what folding the whole log gives. And a run that
had ended at the cut is changed by nothing after it, which is why a tombstone may stand for it.

The same holds for a chain: a base at one cut and a delta at each later cut (the runs the
records in between touched), written to a log and loaded by a new owner.
"""

from __future__ import annotations

import asyncio
import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deerflow.core import history as h
from deerflow.core.state import RunState, fold, next_retry
from deerflow.core.topics import Topics
from deerflow.log.memory import MemoryEventLog
from deerflow.runtime._snapshots import PartitionImage, Snapshots, decode_body
from tests.fuzz.test_fold_properties import fold_runs, perturbed, true_history


def fold_onto(states: dict[str, RunState], events: list[h.HistoryEvent]) -> set[str]:
    """Fold ``events`` onto ``states`` as the orchestrator does; the runs they changed."""
    changed = set()
    for event in events:
        if event.run_id not in states:
            if not isinstance(event, h.RunRequested):
                continue
            states[event.run_id] = RunState(run_id=event.run_id)
        if fold(states[event.run_id], event):
            changed.add(event.run_id)
    return changed


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_folding_the_rest_onto_a_snapshot_of_a_prefix_folds_everything(
    data: st.DataObject,
) -> None:
    runs = [data.draw(true_history(f"r{i}")) for i in range(data.draw(st.integers(1, 3)))]
    log = data.draw(perturbed([events for _, events in runs]))
    cut = data.draw(st.integers(0, len(log)))
    prefix = fold_runs(log[:cut])
    snapshots = Snapshots(MemoryEventLog(), Topics("h"))
    body = snapshots.encode(0, PartitionImage(cut, list(prefix.values())))
    image = decode_body(body, 0)
    assert image.covered == cut
    restored = {state.run_id: state for state in image.runs}
    assert restored == prefix
    changed = fold_onto(restored, log[cut:])
    assert restored == fold_runs(log)
    ended_at_cut = {run_id for run_id, state in prefix.items() if state.terminal}
    assert not changed & ended_at_cut


def image_of(
    states: dict[str, RunState], covered: int, only: set[str] | None = None
) -> PartitionImage:
    """What an owner holding ``states`` puts in a snapshot (``only``: a delta of those runs):
    running runs' states, ended runs' tombstones, and runs it does not hold as gone."""
    image = PartitionImage(covered)
    for run_id in sorted(states if only is None else only):
        state = states.get(run_id)
        if state is None:
            image.gone.append(run_id)
        elif state.terminal:
            image.ended.append((run_id, next_retry(state), state.finished_at or 0.0))
        else:
            image.runs.append(state)
    return image


async def through_a_chain(log: list[h.HistoryEvent], cuts: list[int]) -> PartitionImage:
    """Fold ``log``, writing a base at the first cut and a delta at each later one to a log;
    what a new owner then loads."""
    events = MemoryEventLog()
    writer = Snapshots(events, Topics("h"))
    states = fold_runs(log[: cuts[0]])
    await writer.write(0, 1, cuts[0], writer.encode(0, image_of(states, cuts[0])))
    for before, cut in itertools.pairwise(cuts):
        touched = {event.run_id for event in log[before:cut]}  # as the owner notes them
        fold_onto(states, [e for e in log[before:cut] if not _ended(states, e.run_id)])
        delta = image_of(states, cut, touched)
        await writer.write(0, 1, cut, writer.encode(0, delta, delta=True), delta=True)
    images = await Snapshots(events, Topics("h")).load([0], 1)
    return images[0]


def _ended(states: dict[str, RunState], run_id: str) -> bool:
    """Whether ``run_id`` has ended: a tombstone stands for it, and its events are ignored."""
    state = states.get(run_id)
    return state is not None and state.terminal


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_folding_the_rest_onto_a_chain_of_deltas_folds_everything(data: st.DataObject) -> None:
    runs = [data.draw(true_history(f"r{i}")) for i in range(data.draw(st.integers(1, 4)))]
    log = data.draw(perturbed([events for _, events in runs]))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(log)), min_size=1, max_size=6)))
    image = asyncio.run(through_a_chain(log, cuts))
    last = fold_runs(log[: cuts[-1]])
    assert image.covered == cuts[-1]
    restored = {state.run_id: state for state in image.runs}
    assert restored == {r: s for r, s in last.items() if not s.terminal}
    ended = {t[0] for t in image.ended}
    assert ended == {r for r, s in last.items() if s.terminal}
    fold_onto(restored, [e for e in log[cuts[-1] :] if e.run_id not in ended])
    everything = fold_runs(log)
    assert restored == {r: s for r, s in everything.items() if r not in ended}
    assert all(everything[r] == last[r] for r in ended)  # nothing after its end changed it
