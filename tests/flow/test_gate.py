"""The gate of one flow partition, pure: its decisions depend only on its records, so a gate
rebuilt from them decides alike; it holds only what later decisions read."""

from __future__ import annotations

import random
from typing import Any

import deerflow._codec as _codec
from deerflow.core import history as h
from deerflow.flow import FlowReleased, PartitionGate, RunAdmitted, RunDropped, RunQueued
from deerflow.flow._fold import gate_run
from deerflow.flow._gate import AGING, CARRY_CHUNK
from deerflow.flow._service import route
from deerflow.log.base import Record

LIMITS = {"concurrency": 2, "rate": None, "period": None, "drop": False}


def req(run: str, ts: float, prio: int = 0, limits: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"k": "req", "run": run, "ts": ts, "at": ts, "prio": prio, "limits": limits or LIMITS}


def rel(run: str, ts: float) -> dict[str, Any]:
    return {"k": "rel", "run": run, "ts": ts}


def decide(records: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, str, float | None]]:
    gate = PartitionGate()
    out = []
    for key, body in records:
        for event in gate.apply(key, body):
            out.append((type(event).__name__, event.run_id, getattr(event, "not_before", None)))
    return out


def test_a_gate_rebuilt_from_the_same_records_decides_alike_and_repeats_change_nothing():
    rng = random.Random(7)
    records: list[tuple[str, dict[str, Any]]] = []
    running: dict[str, list[str]] = {"a": [], "b": []}
    for i in range(400):
        key = rng.choice("ab")
        if running[key] and rng.random() < 0.5:
            records.append((key, rel(running[key].pop(0), i)))
        else:
            run = f"{key}{i}"
            running[key].append(run)
            records.append((key, req(run, i)))
    first = decide(records)
    # Delivered twice (a router that crashed before committing routes them again).
    doubled = [r for record in records for r in (record, record)]
    assert decide(records) == first
    assert decide(doubled) == first
    assert len({run for _, run, _ in first}) == len(first)  # one decision per run


def test_at_most_the_limit_is_admitted_and_the_queue_is_served_in_order():
    gate = PartitionGate()
    admitted = []
    for i in range(5):
        admitted += [e.run_id for e in gate.apply("k", req(f"r{i}", float(i)))]
    assert admitted == ["r0", "r1"]
    assert (gate.queued(), gate.running()) == (3, 2)
    admitted += [e.run_id for e in gate.apply("k", rel("r1", 10.0))]
    admitted += [e.run_id for e in gate.apply("k", rel("r0", 11.0))]
    assert admitted == ["r0", "r1", "r2", "r3"]
    # A queued run that ends (cancelled) leaves the queue: nothing admits it later.
    assert gate.apply("k", rel("r4", 12.0)) == []
    for run in ("r2", "r3"):
        assert gate.apply("k", rel(run, 13.0)) == []
    assert len(gate) == 0  # nothing held for an idle key


def test_priority_goes_first_but_a_long_wait_beats_it():
    gate = PartitionGate()
    limits = {**LIMITS, "concurrency": 1}
    gate.apply("k", req("running", 0.0, limits=limits))
    gate.apply("k", req("old-low", 1.0, limits=limits))
    gate.apply("k", req("new-high", 2.0, prio=1, limits=limits))
    gate.apply("k", req("late-high", AGING + 5.0, prio=1, limits=limits))
    order = []
    for run in ("running", "new-high", "old-low", "late-high"):
        order += [e.run_id for e in gate.apply("k", rel(run, 100.0))]
    # new-high passes old-low (queued 1 s before it); late-high, queued more than AGING
    # seconds after old-low, does not.
    assert order == ["new-high", "old-low", "late-high"]


def test_a_rate_limit_delays_or_drops_by_the_records_times():
    limits = {"concurrency": None, "rate": 2, "period": 10.0, "drop": False}
    gate = PartitionGate()
    decided = [gate.apply("k", req(f"r{i}", float(i), limits=limits))[0] for i in range(5)]
    assert all(isinstance(e, RunAdmitted) for e in decided)
    assert [getattr(e, "not_before", None) for e in decided] == [None, None, 10.0, 11.0, 20.0]
    dropping = PartitionGate()
    drop = {**limits, "drop": True}
    decided = [dropping.apply("k", req(f"r{i}", float(i), limits=drop))[0] for i in range(4)]
    assert [type(e).__name__ for e in decided] == [
        "RunAdmitted",
        "RunAdmitted",
        "RunDropped",
        "RunDropped",
    ]
    assert isinstance(decided[2], RunDropped)
    assert "2 runs per 10s" in decided[2].reason
    # A new window admits again.
    assert isinstance(dropping.apply("k", req("later", 30.0, limits=drop))[0], RunAdmitted)


def test_the_ended_window_is_bounded():
    gate = PartitionGate(ended_window=10)
    for i in range(100):
        gate.apply("k", req(f"r{i}", float(i)))
        gate.apply("k", rel(f"r{i}", float(i)))
    assert len(gate._ended) == 10
    assert len(gate) == 0


def test_debounce_keeps_the_run_requested_last_whatever_order_the_requests_come_in():
    limits = {"debounce": 5.0, "debounce_timeout": None}
    arrivals = [("r1", 1.0), ("r3", 3.0), ("r2", 2.0), ("r4", 20.0)]
    gate = PartitionGate()
    decided = []
    for run, at in arrivals:
        body = {"k": "req", "run": run, "ts": at, "at": at, "limits": limits}
        decided += [(type(e).__name__, e.run_id) for e in gate.apply("k", body)]
    assert decided == [
        ("RunAdmitted", "r1"),
        ("RunSuperseded", "r1"),
        ("RunAdmitted", "r3"),
        ("RunSuperseded", "r2"),  # requested before r3: r3 goes on
        ("RunAdmitted", "r4"),  # after r3's start: a burst of its own
    ]


def test_keys_that_hold_nothing_are_forgotten_even_without_a_release():
    limits = {"concurrency": None, "rate": 1, "period": 5.0, "drop": True}
    gate = PartitionGate()
    for i in range(3000):
        # A key each: its run ends within the period (its window still counts at the release),
        # and a second run of the key is dropped (no release comes for it).
        gate.apply(f"k{i}", req(f"r{i}", float(i), limits=limits))
        gate.apply(f"k{i}", rel(f"r{i}", i + 0.1))
        assert isinstance(gate.apply(f"k{i}", req(f"x{i}", i + 0.2, limits=limits))[0], RunDropped)
    assert len(gate) < 1024  # swept as the records go by, not one per key for ever


def test_a_key_that_never_goes_idle_is_carried_and_a_rebuild_from_its_carry_decides_alike():
    """A key always holding a run: its carry record lets a rebuild start after the key's
    first record, and the rebuilt gate decides what follows as the live one does (the same
    admissions, the limit held, the long-running run still counted)."""
    limits = {"concurrency": 2, "rate": 3, "period": 50.0, "drop": False}
    log: list[tuple[str, dict[str, Any]]] = []
    live = PartitionGate()

    def append(key: str, body: dict[str, Any]) -> list[Any]:
        log.append((key, body))
        return live.apply(key, body, len(log) - 1)

    append("k", req("holder", 0.0, limits=limits))  # runs for ever: "k" is never idle
    running: list[str] = []
    for i in range(1, 200):
        for event in append("k", req(f"r{i}", float(i), prio=i % 3, limits=limits)):
            running.append(event.run_id)
        if running and i % 2 == 0:
            append("k", rel(running.pop(0), float(i)))
        if i % 20 == 0:  # the member's round: carry what began before the last 10 records
            for key, value in live.carry(len(log) - 10, 100):
                append(key, _codec.loads(value))
    oldest = live.oldest_offset()
    assert oldest is not None and oldest > 150  # not the holder's request, at 0
    start = min(oldest, len(log) - 10)
    rebuilt = PartitionGate()
    for offset in range(start, len(log)):
        rebuilt.apply(*log[offset], offset)
    assert rebuilt.running() == live.running() == 2
    assert "holder" in rebuilt.keys["k"].running
    assert rebuilt.queued() == live.queued() > 0
    other = next(r for r in live.keys["k"].running if r != "holder")
    later = [rel(other, 300.0), req("late", 301.0, limits=limits), rel("holder", 302.0)]
    for body in later:
        one = [
            (type(e).__name__, e.run_id, getattr(e, "not_before", None))
            for e in live.apply("k", body, len(log))
        ]
        two = [
            (type(e).__name__, e.run_id, getattr(e, "not_before", None))
            for e in rebuilt.apply("k", body, len(log))
        ]
        log.append(("k", body))
        assert one == two
        if body["k"] == "rel":  # a slot of a full key freed: a queued run is admitted
            assert [name for name, _, _ in one] == ["RunAdmitted"]


def test_a_carry_record_of_a_key_that_changed_meanwhile_changes_nothing():
    gate = PartitionGate()
    gate.apply("k", req("a", 0.0), 0)
    gate.apply("k", req("b", 1.0), 1)
    [(key, value)] = gate.carry(5, 10)
    gate.apply("k", rel("a", 2.0), 2)  # between the carry and its record
    gate.apply(key, _codec.loads(value), 3)
    assert gate.oldest_offset() == 0  # not moved: the record missed the release
    assert list(gate.keys["k"].running) == ["b"]
    [(key, value)] = gate.carry(5, 10)
    gate.apply(key, _codec.loads(value), 4)
    assert gate.oldest_offset() == 4
    assert list(gate.keys["k"].running) == ["b"]


def test_debounce_with_a_concurrency_limit_queues_each_bursts_latest_for_a_slot():
    limits = {"debounce": 5.0, "debounce_timeout": None, "concurrency": 1}
    gate = PartitionGate()
    decided: list[tuple[str, str]] = []

    def apply(body: dict[str, Any]) -> None:
        decided.extend((type(e).__name__, e.run_id) for e in gate.apply("k", body))

    def request(run: str, at: float) -> None:
        apply({"k": "req", "run": run, "ts": at, "at": at, "limits": limits})

    request("a1", 1.0)
    request("a2", 2.0)  # the same burst: a1 superseded
    apply({"k": "due", "run": "a2", "ts": 7.0})  # a2's debounce over: it takes the slot
    request("b1", 8.0)  # a new burst while a2 runs
    apply({"k": "due", "run": "b1", "ts": 13.0})  # over, but the slot is a2's: queued
    request("c1", 14.0)
    request("d1", 20.0)  # c1's burst ended unseen (no due yet): c1 queues as d1's begins
    apply({"k": "due", "run": "a2", "ts": 20.5})  # late and stale: nothing
    apply({"k": "rel", "run": "a2", "ts": 21.0})  # the slot frees: b1 goes on
    apply({"k": "rel", "run": "b1", "ts": 22.0})
    assert decided == [
        ("RunDebounced", "a1"),
        ("RunSuperseded", "a1"),
        ("RunDebounced", "a2"),
        ("RunAdmitted", "a2"),
        ("RunDebounced", "b1"),
        ("RunDebounced", "c1"),
        ("RunDebounced", "d1"),
        ("RunAdmitted", "b1"),
        ("RunAdmitted", "c1"),
    ]
    assert gate.running() == 1 and gate.queued() == 0


def test_a_retry_of_a_debounced_run_queues_for_a_slot_without_a_new_burst():
    limits = {"debounce": 5.0, "debounce_timeout": None, "concurrency": 1}
    gate = PartitionGate()
    out = gate.apply("k", {"k": "req", "run": "r", "ts": 1.0, "at": 1.0, "limits": limits})
    out += gate.apply("k", {"k": "due", "run": "r", "ts": 6.0})
    out += gate.apply("k", {"k": "req", "run": "s", "ts": 7.0, "at": 7.0, "limits": limits})
    out += gate.apply("k", {"k": "rel", "run": "r", "ts": 8.0})  # r failed
    retry = {"k": "req", "run": gate_run("r", 1), "ts": 9.0, "at": 9.0, "limits": limits}
    out += gate.apply("k", retry)
    assert [(type(e).__name__, e.run_id, e.id) for e in out] == [
        ("RunDebounced", "r", "r:flow:debounced"),
        ("RunAdmitted", "r", "r:flow:admitted"),
        ("RunDebounced", "s", "s:flow:debounced"),
        ("RunAdmitted", "r", "r:flow:admitted:retry:1"),  # s's burst goes on meanwhile
    ]
    assert gate.running() == 1


def test_a_key_of_more_runs_than_one_carry_record_holds_is_carried_in_several():
    """A key of thousands of queued runs is carried in several records; a release between
    them admits no run until the last is applied (not all the key holds is known before), and
    a gate rebuilt from the first of them decides as the live one does."""
    queued = 2 * CARRY_CHUNK + 500
    log: list[tuple[str, dict[str, Any]]] = []
    live = PartitionGate()

    def append(key: str, body: dict[str, Any]) -> list[Any]:
        log.append((key, body))
        return live.apply(key, body, len(log) - 1)

    admitted = [e.run_id for i in range(queued + 2) for e in append("k", req(f"r{i}", float(i)))]
    assert admitted == ["r0", "r1"]
    records = live.carry(len(log), 100)
    assert len(records) == 3 and all(key == "k" for key, _ in records)
    assert all(len(value) < 400_000 for _, value in records)  # well within a broker's limit
    first = len(log)
    decided: list[Any] = []
    decided += append(*_loads(records[0]))
    decided += append("k", rel("r0", 10_000.0))  # between the records: waits for the last
    decided += append(*_loads(records[1]))
    decided += append("k", rel(f"r{queued}", 10_001.0))  # a run of the last record, cancelled
    assert decided == []
    decided += append(*_loads(records[2]))
    assert [e.run_id for e in decided] == ["r2"]  # the oldest queued run, one slot freed
    assert live.oldest_offset() == first
    assert (live.running(), live.queued()) == (2, queued - 2)

    rebuilt = PartitionGate()
    again = [
        e.run_id for offset in range(first, len(log)) for e in rebuilt.apply(*log[offset], offset)
    ]
    assert again == ["r2"]
    assert rebuilt.keys["k"].running == live.keys["k"].running
    assert rebuilt.keys["k"].queued == live.keys["k"].queued
    for body in [rel("r1", 10_002.0), rel("r2", 10_003.0)]:
        one = [e.run_id for e in live.apply("k", body, len(log))]
        two = [e.run_id for e in rebuilt.apply("k", body, len(log))]
        log.append(("k", body))
        assert one == two and len(one) == 1  # in request order, the same in both


def test_a_carry_that_lost_its_first_record_changes_nothing():
    gate = PartitionGate()
    for i in range(CARRY_CHUNK + 10):
        gate.apply("k", req(f"r{i}", float(i)), i)
    records = gate.carry(10**6, 100)
    gate.apply("k", rel("r0", 9_999.0), 10**6)  # the key changed: its first record is stale
    assert [gate.apply(*_loads(record), 10**6 + 1 + n) for n, record in enumerate(records)] == [
        [],
        [],
    ]
    assert gate.oldest_offset() == 0
    assert gate.keys["k"].carrying is None and len(gate.keys["k"].running) == 2


def _loads(record: tuple[str, bytes]) -> tuple[str, dict[str, Any]]:
    return record[0], _codec.loads(record[1])


def test_the_router_passes_one_rounds_requests_on_in_the_order_they_were_requested():
    """History partitions are read in no order between them: a round's requests go to the
    gates by request time (ties as read), so a run requested later cannot take a free slot
    first; releases keep their places."""

    def record(partition: int, event: Any) -> Record:
        return Record("h", partition, 0, event.run_id, h.encode(event), (), 0)

    def queued(run: str, at: float) -> RunQueued:
        return RunQueued(
            id=run, run_id=run, ts=at, workflow="w", key="w/k", limits=LIMITS, requested_at=at
        )

    read = [
        record(1, queued("third", 3.0)),
        record(1, FlowReleased(id="x", run_id="old", ts=3.5, key="w/k")),
        record(0, queued("first", 1.0)),
        record(2, queued("tie_a", 4.0)),
        record(0, queued("second", 2.0)),
        record(2, queued("tie_b", 4.0)),
    ]
    routed = [_codec.loads(m.value) for m in route("flow", read)]
    assert [(body["k"], body["run"]) for body in routed] == [
        ("req", "first"),
        ("rel", "old"),
        ("req", "second"),
        ("req", "third"),
        ("req", "tie_a"),
        ("req", "tie_b"),
    ]
