"""One partition's index: waits by key, recent events for late waits, bounds."""

from __future__ import annotations

from typing import Any

from deerflow.matching._index import GRACE, PartitionIndex, Wait


def wait(
    ident: str, key: str = "k", earliest: float = 100.0, deadline: float | None = None
) -> Wait:
    return Wait(ident, f"run-{ident}", key, earliest, deadline, None)


def anything(wait: Wait, view: dict[str, Any]) -> bool:
    return True


def test_an_event_meets_only_the_waits_of_its_key_each_once():
    index = PartitionIndex()
    for ident, key in (("a", "k1"), ("b", "k1"), ("c", "k2")):
        assert index.add(wait(ident, key), anything) is None
    met = [w.id for w in index.event("k1", 150.0, {"id": "e1"}, anything)]
    assert sorted(met) == ["a", "b"]
    assert [w.id for w in index.event("k1", 151.0, {"id": "e2"}, anything)] == []
    assert len(index) == 1


def test_an_event_routed_before_its_wait_still_meets_it_if_it_happened_after_the_wait_began():
    index = PartitionIndex()
    list(index.event("k", 99.0, {"id": "before"}, anything))
    list(index.event("k", 101.0, {"id": "after"}, anything))
    # The wait began at 100: the event of 99 is older; the one of 101 was only routed sooner.
    assert index.add(wait("a", earliest=100.0), anything) == {"id": "after"}
    # With a lookback of 10 s the wait's earliest event time is 90: the older one meets it.
    assert index.add(wait("b", earliest=90.0), anything) == {"id": "before"}
    assert len(index) == 0


def test_where_decides_per_wait_and_a_refused_event_leaves_the_wait():
    index = PartitionIndex()
    index.add(wait("a"), anything)
    big = lambda w, view: view["amount"] > 10  # noqa: E731
    assert list(index.event("k", 150.0, {"id": "e1", "amount": 1}, big)) == []
    assert [w.id for w in index.event("k", 151.0, {"id": "e2", "amount": 50}, big)] == ["a"]


def test_a_registration_delivered_again_after_its_wait_ended_is_dropped():
    index = PartitionIndex()
    index.add(wait("a"), anything)
    assert [w.id for w in index.event("k", 150.0, {"id": "e"}, anything)] == ["a"]
    assert index.add(wait("a"), anything) is None  # not re-added, not matched again
    assert len(index) == 0
    index.end("b")  # a wait that ended before its registration was read ...
    assert index.add(wait("b"), anything) is None
    assert len(index) == 0  # ... is never registered


def test_waits_leave_after_their_deadline_and_events_after_the_buffer_window():
    index = PartitionIndex(buffer_seconds=60.0)
    index.add(wait("a", deadline=200.0), anything)
    index.add(wait("b"), anything)
    list(index.event("other", 150.0, {"id": "e"}, anything))
    assert index.expire(200.0 + GRACE + 1) == 1
    assert len(index) == 1
    assert index.buffered == 0  # 150 is more than 60 s before now


def test_the_index_and_its_buffer_are_bounded():
    index = PartitionIndex(max_waits=3, max_events=2)
    for n in range(5):
        index.add(wait(f"w{n}", key=f"k{n}"), anything)
        list(index.event(f"x{n}", 150.0, {"id": f"e{n}"}, anything))
    assert len(index) == 3
    assert index.evicted == 2
    assert index.buffered == 2
    # The oldest waits went first: w0 and w1 meet nothing now.
    assert list(index.event("k0", 151.0, {"id": "late"}, anything)) == []
    assert [w.id for w in index.event("k4", 151.0, {"id": "late"}, anything)] == ["w4"]
