"""One partition's index: waits by key, recent events for late waits, bounds."""

from __future__ import annotations

from typing import Any

import orjson

from deerflow.matching._index import GRACE, PartitionIndex, Wait
from deerflow.matching._rebuild import OffsetClock, carried, rebuild_from


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


def test_a_rebuild_must_start_at_the_oldest_live_wait_or_buffered_event():
    index = PartitionIndex()
    index.add(Wait("a", "run-a", "k1", 100.0, None, None, 5), anything)
    index.add(Wait("b", "run-b", "k2", 100.0, None, None, 9), anything)
    list(index.event("k3", 150.0, {"id": "e"}, anything, 7))
    assert index.oldest_offset() == 5
    list(index.event("k1", 151.0, {"id": "e2"}, anything, 12))  # a ends
    assert index.oldest_offset() == 7  # the buffered events are the oldest now


def test_a_registration_read_again_moves_its_wait_to_the_newest_offset():
    index = PartitionIndex()
    for n, ident in enumerate("abc"):
        index.add(Wait(ident, f"run-{ident}", "k", 100.0, None, None, n), anything)
    assert [w.id for w in index.registered_before(2, 10)] == ["a", "b"]
    index.add(Wait("a", "run-a", "k", 100.0, None, None, 40), anything)  # written again
    assert len(index) == 3
    assert [w.id for w in index.registered_before(2, 10)] == ["b"]
    assert index.oldest_offset() == 1
    assert [w.id for w in index.registered_before(100, 2)] == ["b", "c"]  # oldest first, bounded


def test_a_rebuild_reads_the_window_at_least_and_back_to_what_the_index_holds():
    index = PartitionIndex()
    assert rebuild_from(index, 1000, reread=100) == 900  # nothing held: the window only
    assert rebuild_from(index, 50, reread=100) == 0
    index.add(Wait("a", "run-a", "k", 100.0, None, ("approval", 1, "wf", "1", False), 40), anything)
    assert rebuild_from(index, 1000, reread=100) == 40  # a live wait from before the window


def test_a_wait_registered_before_the_window_is_written_again_to_its_partition():
    index = PartitionIndex()
    node = ("approval", 1, "wf", "1", False)
    index.add(Wait("old", "run-old", "k1", 100.0, 900.0, node, 40), anything)
    index.add(Wait("new", "run-new", "k2", 100.0, None, None, 950), anything)
    (message,) = carried(index, "p.matching", 3, 900)
    assert (message.topic, message.partition, message.key) == ("p.matching", 3, "k1")
    assert orjson.loads(message.value) == {
        "k": "wait",
        "id": "old",
        "run": "run-old",
        "since": 100.0,
        "deadline": 900.0,
        "node": ["approval", 1, "wf", "1", False],
    }


def test_a_wait_registered_longer_ago_than_the_carry_age_is_written_again_however_few_records():
    clock = OffsetClock()
    for minute, head in enumerate([10, 12, 13, 15, 15]):
        clock.read(head, 60.0 * minute)
    assert clock.before(age=150.0, now=240.0) == 12  # read by t=60: more than 150 s ago
    assert clock.before(age=1000.0, now=240.0) == 0  # nothing that old
    assert clock.before(age=150.0, now=300.0) == 13  # time moved on


def replay(records: list[tuple[int, str, str]]) -> PartitionIndex:
    """An index rebuilt from ``records`` (offset, kind, wait id) of one key."""
    index = PartitionIndex()
    for offset, kind, ident in records:
        if kind == "wait":
            index.add(Wait(ident, f"run-{ident}", "k", 100.0, None, None, offset), anything)
        else:
            index.end(ident)
    return index


def test_a_registration_read_after_its_wait_ended_is_followed_by_an_end_before_it_is_let_go():
    # The carry wrote "a" again while its end was on its way: the copy lands after the end.
    records = [(5, "wait", "a"), (8, "end", "a"), (10, "wait", "a")]
    index = replay(records)
    assert len(index) == 0 and index.stale == ["a"]
    assert index.oldest_offset() == 10  # a rebuild still starts at the copy, before its end
    (end,) = index.carry(before=0, limit=10)
    assert end == ("k", orjson.dumps({"k": "end", "id": "a"}))
    records.append((12, orjson.loads(end[1])["k"], "a"))  # written after the copy, read back
    index.end("a")
    assert index.stale == [] and index.oldest_offset() is None
    # A rebuild from wherever it may start brings no wait back.
    for start in range(13):
        assert len(replay([r for r in records if r[0] >= start])) == 0, start


def test_registrations_read_after_their_waits_ended_are_bounded(monkeypatch):
    monkeypatch.setattr("deerflow.matching._index.MAX_STALE", 3)
    index = replay(
        [(2 * n + i, kind, f"w{n}") for n in range(10) for i, kind in enumerate(["wait", "end"])]
    )
    for n in range(10):
        index.add(Wait(f"w{n}", f"run-w{n}", "k", 100.0, None, None, 100 + n), anything)
    assert index.stale == ["w7", "w8", "w9"]
    assert [record for _, record in index.carry(0, 2)] == [
        orjson.dumps({"k": "end", "id": ident}) for ident in ("w7", "w8")
    ]
