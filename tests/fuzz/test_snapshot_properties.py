"""Property: a snapshot of a folded prefix, folded on with the rest, is the fold of everything.

The runs' states after any prefix of a (perturbed: interleaved, duplicated, contradicted) log
go through a partition snapshot's encoding and decoding; folding the rest of the log onto the
decoded states gives, for every run, exactly what folding the whole log gives. And a run that
had ended at the cut is changed by nothing after it, which is why a tombstone may stand for it.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deerflow.core import history as h
from deerflow.core.state import RunState, fold
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
