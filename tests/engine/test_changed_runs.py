"""A snapshot of a partition takes the runs of that partition noted as changed, once."""

from __future__ import annotations

from deerflow.runtime._changed import ChangedRuns


def test_each_partition_takes_its_own_changed_runs_held_or_not_once():
    partition = {"a": 0, "b": 1, "c": 0, "d": 1}
    changed = ChangedRuns(partition.__getitem__)
    for run_id in ("a", "b", "c", "d"):
        changed.note(run_id)
    held = {"a", "b"}  # c and d are evicted or ended: their partition is computed
    assert len(changed) == 4
    assert changed.take(0, held, {"a"}) == {"a", "c"}
    assert changed.take(0, held, {"a"}) == set()
    changed.note_all(["a"])  # a snapshot that took it was cut short
    assert changed.take(1, held, {"b"}) == {"b", "d"}
    assert changed.take(0, held, {"a"}) == {"a"}
    assert len(changed) == 0


def test_clearing_forgets_every_noted_run():
    changed = ChangedRuns(lambda run_id: 0)
    changed.note("a")
    changed.take(1, set(), set())  # sorted by partition, not taken
    changed.clear()
    assert len(changed) == 0 and changed.take(0, set(), set()) == set()
