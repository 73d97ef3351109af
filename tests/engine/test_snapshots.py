"""Partition snapshots: a new owner loads them and folds only the tail; a bad one is not used.

And the dedupe they carry is bounded: tombstones live for a window and up to a count.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import re
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
import pytest

from deerflow import Engine, Workflow
from deerflow.core import history as h
from deerflow.core.state import Expansion, RunState, TaskState
from deerflow.core.topics import Topics
from deerflow.eventstore import open_log
from deerflow.log.base import EventLog, Message, Record, TopicPartition
from deerflow.log.memory import MemoryEventLog
from deerflow.runtime._outbox import Outbox
from deerflow.runtime._ownership import Ownership
from deerflow.runtime._snapcodec import decode, encode, schema_fingerprint
from deerflow.runtime._snapshots import PartitionImage, SnapshotFenced, Snapshots, decode_body
from deerflow.runtime._tombstones import EndedRuns
from deerflow.web._runs import request_retry
from tests.engine.test_orchestrator_memory import evicted, shipping
from tests.logs import records, until
from tests.reliability.faults import FaultyLog

OWNS = re.compile(r"owns (\d+) partitions: (\d+) snapshots, (\d+) events")


def loads(caplog: pytest.LogCaptureFixture) -> tuple[int, int]:
    """Snapshots used and history records folded by the loads logged so far."""
    found = [OWNS.search(r.getMessage()) for r in caplog.records]
    matches = [m for m in found if m is not None]
    assert matches, "no partition was loaded"
    return sum(int(m[2]) for m in matches), sum(int(m[3]) for m in matches)


def forgotten(engine: Engine, run_id: str) -> Callable[[], bool]:
    """Whether the orchestrator holds neither a state nor a tombstone of ``run_id``."""
    orchestrator = engine.orchestrator
    assert orchestrator is not None
    return lambda: run_id not in orchestrator.runs and not orchestrator.knows(run_id)


def failing_once() -> Workflow:
    wf = Workflow(name="failing_once")

    @wf.task(id="once_broken", retries=1, retry_delay=1.5)
    def once_broken(context):
        if context.attempt == 1:
            raise RuntimeError("first attempt fails")
        return {"attempt": context.attempt}

    return wf


async def finish_runs(store: str, wf: Workflow, count: int, snapshot_every: int) -> int:
    """Run ``count`` runs ``o-<i>`` to their end; returns the history's record count."""
    async with Engine(store, [wf], snapshot_every=snapshot_every) as engine:
        for i in range(count):
            handle = await engine.start(wf, params={"order": i}, run_id=f"o-{i}")
            assert (await handle.result(timeout=60)).status == "completed"
        await until(evicted(engine, [f"o-{i}" for i in range(count)]))
        return len(await records(engine.log, engine.topics.history))


async def test_a_new_owner_loads_the_snapshots_and_folds_only_the_tail(store, caplog):
    executions: Counter[str] = Counter()
    wf = shipping(executions)
    total = await finish_runs(store, wf, 12, snapshot_every=10)
    caplog.set_level(logging.INFO, logger="deerflow.orchestrator")
    async with Engine(store, [wf], snapshot_every=10) as engine:
        later = await (await engine.start(wf, params={"order": "later"})).result(timeout=60)
        # A duplicate request of a run ended before the snapshot: its tombstone came with it.
        again = await (await engine.start(wf, params={"order": "x"}, run_id="o-3")).result(
            timeout=60
        )
        await until(lambda: engine.orchestrator is not None and engine.orchestrator.lag() == 0)
    used, folded = loads(caplog)
    # The stop left snapshots; at most the new run's request (appended while the partitions
    # loaded) is in the tail.
    assert used >= 1 and folded <= 1, (used, folded, total)
    assert later.status == "completed"
    assert again.output == {"label": "L-3"} and executions["o-3/pick"] == 1
    # Without snapshots, the same takeover folds the whole history.
    caplog.clear()
    async with Engine(store, [wf], snapshot_every=0) as engine:
        assert engine.orchestrator is not None
        await asyncio.wait_for(engine.orchestrator.settled.wait(), 30)
    used, folded = loads(caplog)
    assert used == 0 and folded > total


async def test_a_run_waiting_for_a_retry_is_carried_by_the_snapshot(store, caplog):
    wf = failing_once()
    async with Engine(store, [wf], snapshot_every=1) as engine:
        handle = await engine.start(wf)
        await engine.index.wait(handle.run_id, lambda s: bool(s.timers), timeout=30)
        total = len(await records(engine.log, engine.topics.history))
    caplog.set_level(logging.INFO, logger="deerflow.orchestrator")
    async with Engine(store, [wf], snapshot_every=1) as engine:
        result = await engine.wait(handle.run_id, timeout=60)
    assert result.status == "completed" and result.output == {"attempt": 2}
    used, folded = loads(caplog)
    # The snapshot holds the waiting run; the tail is at most what the first owner had
    # appended and not read back yet when it stopped (Kafka reads back later).
    assert used >= 1 and folded < total


async def newest_manifests(
    log: EventLog, snapshots: Snapshots, partitions: int
) -> dict[TopicPartition, tuple[Record, dict[str, Any]]]:
    """Each snapshot partition's newest manifest: its position and content."""
    tps = [TopicPartition(snapshots.topic, p) for p in range(partitions)]
    committed = await log.group_offsets(snapshots.group, tps)
    found: dict[TopicPartition, tuple[Record, dict[str, Any]]] = {}
    for tp, offset in committed.items():
        if offset:
            [record, *_] = await log.read_partition(tp, offset - 1)
            found[tp] = (record, orjson.loads(record.value))
    return found


async def reseal(
    store: str,
    change: Callable[[EventLog, TopicPartition, dict[str, Any]], Awaitable[dict[str, Any]]],
) -> int:
    """Make ``change``'s manifest each partition's newest snapshot; returns how many."""
    async with Engine(store, orchestrate=False, work=False) as client:
        snapshots = Snapshots(client.log, client.topics)
        partitions = await client.log.partition_count(client.topics.history)
        found = await newest_manifests(client.log, snapshots, partitions)
        assert found, "the first engine left no snapshot"
        for tp, (record, manifest) in found.items():
            new = orjson.dumps(await change(client.log, tp, manifest))
            [(_, offset)] = await client.log.append(
                [Message(tp.topic, new, record.key, record.headers, tp.partition)]
            )
            await client.log.commit_group(snapshots.group, {tp: offset + 1})
    return len(found)


def truncated(manifest: dict[str, Any]) -> dict[str, Any]:
    return {**manifest, "chunks": [*manifest["chunks"], manifest["chunks"][-1] + 10_000]}


def corrupted(manifest: dict[str, Any]) -> dict[str, Any]:
    return {**manifest, "sha256": "0" * 64}


def incompatible(manifest: dict[str, Any]) -> dict[str, Any]:
    return {**manifest, "fingerprint": "another-schema"}


def beyond_the_end(manifest: dict[str, Any]) -> dict[str, Any]:
    return {**manifest, "covered": manifest["covered"] + 1000}


@pytest.mark.parametrize("spoil", [truncated, corrupted, incompatible, beyond_the_end])
async def test_a_bad_snapshot_is_not_used_and_the_partition_is_folded_whole(store, caplog, spoil):
    """A bad base: the partition is folded from offset 0. (A bad newest delta leaves its
    chain's good prefix in use: those partitions are counted apart.)"""
    executions: Counter[str] = Counter()
    wf = shipping(executions)
    total = await finish_runs(store, wf, 8, snapshot_every=5)
    deltas = 0

    async def spoilt(_: EventLog, __: TopicPartition, manifest: dict[str, Any]) -> dict[str, Any]:
        nonlocal deltas
        deltas += "chain" in manifest and spoil is not incompatible  # its prefix is good
        return spoil(manifest)

    count = await reseal(store, spoilt)
    caplog.set_level(logging.INFO, logger="deerflow.orchestrator")
    async with Engine(store, [wf], snapshot_every=5) as engine:
        again = await (await engine.start(wf, params={"order": "x"}, run_id="o-3")).result(
            timeout=60
        )
        later = await (await engine.start(wf, params={"order": "later"})).result(timeout=60)
        states = {r.run_id: r.status for r in await engine.list_runs(workflow="shipping")}
    warnings = [r for r in caplog.records if "cannot be used" in r.getMessage()]
    assert len(warnings) == count
    used, folded = loads(caplog)
    assert used == deltas and folded <= total + 1  # + the request made while loading
    assert deltas or folded >= total
    assert again.output == {"label": "L-3"} and executions["o-3/pick"] == 1
    assert later.status == "completed"
    assert sorted(states.values()) == ["completed"] * 9


async def test_a_snapshot_write_cut_short_leaves_the_previous_one_in_use(store, caplog):
    """What a writer killed mid-snapshot leaves (chunks, even a manifest, but no commit) is
    ignored: the next owner loads the previous snapshot and folds the tail after it."""
    executions: Counter[str] = Counter()
    wf = shipping(executions)
    await finish_runs(store, wf, 6, snapshot_every=4)
    async with Engine(store, [wf], orchestrate=False, work=False) as client:
        snapshots = Snapshots(client.log, client.topics)
        partitions = await client.log.partition_count(client.topics.history)
        before = await newest_manifests(client.log, snapshots, partitions)
        for tp, (record, manifest) in before.items():
            # Half a snapshot: a chunk of garbage, then a manifest that names it, never committed,
            # in the slot a writer uses next (not the newest one's: compaction keeps that).
            slot = 1 - manifest["slot"]
            [(_, chunk)] = await client.log.append(
                [
                    Message(
                        tp.topic,
                        b"{half",
                        f"{tp.partition}/{slot}/0",
                        (("deerflow-snapshot", b"chunk"),),
                        tp.partition,
                    )
                ]
            )
            await client.log.append(
                [
                    Message(
                        tp.topic,
                        orjson.dumps({**manifest, "chunks": [chunk], "slot": slot}),
                        f"{tp.partition}/{slot}/manifest",
                        record.headers,
                        tp.partition,
                    )
                ]
            )
        # Records the snapshots do not cover already: the stopped engine's last appends,
        # which it had not read back (folded) when it took its last snapshots.
        left = 0
        for tp, (_, manifest) in before.items():
            history_tp = TopicPartition(client.topics.history, tp.partition)
            left += len(await client.log.read_partition(history_tp, manifest["covered"]))
        # More history after the snapshot: the tail.
        tail = await client.start(wf, params={"order": "tail"}, run_id="tail")
    caplog.set_level(logging.INFO, logger="deerflow.orchestrator")
    async with Engine(store, [wf], snapshot_every=4) as engine:
        result = await engine.wait(tail.run_id, timeout=60)
        again = await (await engine.start(wf, params={"order": "x"}, run_id="o-1")).result(
            timeout=60
        )
    used, folded = loads(caplog)
    # The tail's request (and the duplicate's, if made while the partitions loaded).
    assert used == len(before) and 1 <= folded - left <= 2, (used, folded, left)
    assert result.status == "completed" and again.output == {"label": "L-1"}
    assert executions["o-1/pick"] == 1


async def test_a_duplicate_request_after_the_dedupe_window_starts_the_run_again(store):
    executions: Counter[str] = Counter()
    wf = shipping(executions)
    async with Engine(store, [wf], dedupe_window=0.5) as engine:
        first = await (await engine.start(wf, params={"order": "a"}, run_id="o-1")).result(
            timeout=60
        )
        await until(forgotten(engine, "o-1"))  # evicted, and its tombstone expired
        await engine.start(wf, params={"order": "b"}, run_id="o-1")
        await until(lambda: executions["o-1/label"] == 2)
    assert first.output == {"label": "L-a"}
    assert executions["o-1/pick"] == 2  # the id started again: its first run was forgotten


async def test_a_failed_run_whose_tombstone_expired_is_still_retried(store):
    executions: Counter[str] = Counter()
    broken = {"x"}
    wf = shipping(executions, broken)
    async with Engine(store, [wf], dedupe_window=0.5) as engine:
        orchestrator = engine.orchestrator
        assert orchestrator is not None
        failed = await (await engine.start(wf, params={"order": "x"})).result(timeout=60)
        assert failed.status == "failed"
        await until(forgotten(engine, failed.run_id))
        broken.clear()
        assert await request_retry(engine, failed.run_id) == 1
        done = await engine.index.wait(failed.run_id, lambda s: s.status == "completed", 60)
    assert done is not None and done.output == {"label": "L-x"}
    assert executions[f"{failed.run_id}/pick"] == 1  # its output was kept, not recomputed


def test_tombstones_are_kept_for_the_window_and_up_to_the_limit():
    now = [1000.0]
    ended = EndedRuns(window=60.0, limit=3, clock=lambda: now[0])

    def over(run_id: str, at: float) -> RunState:
        return RunState(run_id=run_id, status="completed", finished_at=at)

    for i in range(4):
        ended.add(0, over(f"r{i}", 990.0 + i))
    assert [t[0] for t in ended.kept(0)] == ["r1", "r2", "r3"]  # the oldest went first
    assert ended.contains(0, "r3") and not ended.contains(0, "r0")
    now[0] = 990.0 + 2 + 60.5  # r1 and r2 ended more than a window ago
    assert not ended.contains(0, "r1") and not ended.contains(0, "r2")
    assert ended.contains(0, "r3")
    assert [t[0] for t in ended.kept(0)] == ["r3"]


def test_the_codec_round_trips_every_part_of_a_run_state():
    state = RunState(
        run_id="r",
        parent=h.ParentRef(run_id="p", task_id="t"),
        extensions={
            "machine": {
                "state": "open",
                "requests": [{"request_id": "q", "transition": "go", "data": None}],
                "transitions": [{"request_id": "start", "target": "open"}],
            }
        },
        seen={"a": 1, "b": 2},
        timers={"t": 5.0},
        search_attributes={"customer": "c-1", "amount": 3},
    )
    state.tasks["fan"] = TaskState(
        status="expanded",
        attempts=1,
        expansion=Expansion.plan("fan", [{"id": "c1"}, {"id": "c2", "depends_on": ["c1"]}]),
    )
    assert decode(encode(state), RunState) == state
    assert len(schema_fingerprint(RunState)) == 16


class GatedReads(FaultyLog):
    """A log whose whole-partition reads wait until the test opens the gate."""

    def __init__(self, url: str) -> None:
        super().__init__(open_log(url))
        self.gate = asyncio.Event()

    async def read_partitions(
        self, start: Mapping[TopicPartition, int], *, max_wait: float = 0.2
    ) -> dict[TopicPartition, list[Record]]:
        await self.gate.wait()
        return await super().read_partitions(start, max_wait=max_wait)


async def test_taking_partitions_over_does_not_wait_inside_the_group_callback(store):
    """The group's assignment callback only notes the partitions: the engine starts while
    their load is held, owns none of their runs meanwhile, and runs them once it is done."""
    executions: Counter[str] = Counter()
    wf = shipping(executions)
    log = GatedReads(store)
    async with Engine(log, [wf]) as engine:
        orchestrator = engine.orchestrator
        assert orchestrator is not None
        assert not orchestrator.settled.is_set() and not orchestrator.owns("o-1")
        log.gate.set()
        await asyncio.wait_for(orchestrator.settled.wait(), 30)
        assert orchestrator.owns("o-1")
        result = await (await engine.start(wf, params={"order": 1}, run_id="o-1")).result(
            timeout=60
        )
    assert result.output == {"label": "L-1"}


async def test_a_snapshot_whose_covered_record_differs_is_not_used(store, caplog):
    """A snapshot sound in itself, but whose covered record is not the history's (a history
    recreated since), is not used: the partition is folded whole."""
    executions: Counter[str] = Counter()
    wf = shipping(executions)
    total = await finish_runs(store, wf, 8, snapshot_every=5)

    async def restamped(
        log: EventLog, tp: TopicPartition, manifest: dict[str, Any]
    ) -> dict[str, Any]:
        chunks = await log.read_partition(tp, manifest["chunks"][0])
        body = orjson.loads(b"".join(r.value for r in chunks if r.offset in manifest["chunks"]))
        other = orjson.dumps({**body, "stamp": body["stamp"] + 1})
        [(_, chunk)] = await log.append(
            [Message(tp.topic, other, "x", (("deerflow-snapshot", b"chunk"),), tp.partition)]
        )
        size, sha256 = len(other), hashlib.sha256(other).hexdigest()
        return {**manifest, "chunks": [chunk], "size": size, "sha256": sha256}

    count = await reseal(store, restamped)
    caplog.set_level(logging.INFO, logger="deerflow.orchestrator")
    async with Engine(store, [wf], snapshot_every=5) as engine:
        again = await (await engine.start(wf, params={"order": "x"}, run_id="o-3")).result(
            timeout=60
        )
    warnings = [r for r in caplog.records if "is not the one it covered" in r.getMessage()]
    assert len(warnings) == count
    used, folded = loads(caplog)
    assert used == 0 and total <= folded <= total + 1
    assert again.output == {"label": "L-3"} and executions["o-3/pick"] == 1


def approvals(executions: Counter[str]) -> Workflow:
    """Runs that wait for an ``approve`` signal between two tasks."""
    wf = Workflow(name="approvals")

    @wf.task(id="request")
    def request(context):
        executions[f"{context.run_id}/request"] += 1
        return context.params["n"]

    wf.wait_for_signal(id="go", name="approve", depends_on=["request"])

    @wf.task(id="report", depends_on=["go"])
    def report(context):
        executions[f"{context.run_id}/report"] += 1
        return {"n": context.tasks["request"].output, "approved": context.tasks["go"].output}

    return wf


WAITING, APPROVED = 40, 12


async def runs_waiting(engine: Engine, run_ids: list[str]) -> None:
    """Until each of ``run_ids`` waits for its signal, as its owner holds it."""
    orchestrator = engine.orchestrator
    assert orchestrator is not None

    def all_waiting() -> bool:
        states = [orchestrator.runs.get(run_id) for run_id in run_ids]
        return all(s is not None and s.tasks.get("go") is not None for s in states)

    await until(all_waiting, timeout=60)


async def leave_delta_chains(store: str, wf: Workflow) -> dict[str, bytes]:
    """Runs that wait, some approved and done, under snapshots every few records: the
    partitions' newest snapshots are deltas on a base. Returns what the owner held of each
    running run when it stopped."""
    async with Engine(store, [wf], snapshot_every=4) as engine:
        orchestrator = engine.orchestrator
        assert orchestrator is not None
        for n in range(WAITING):
            await engine.start(wf, params={"n": n}, run_id=f"a-{n:02d}")
        await runs_waiting(engine, [f"a-{n:02d}" for n in range(WAITING)])
        for n in range(APPROVED):
            await engine.signal(f"a-{n:02d}", "approve", f"yes-{n}")
        for n in range(APPROVED):
            assert (await engine.wait(f"a-{n:02d}", timeout=60)).status == "completed"
        await until(lambda: orchestrator.lag() == 0)
        await asyncio.sleep(0.5)  # the last outcomes read back: nothing changes any more
        # An ended run may not be evicted yet: a snapshot holds its tombstone, not its state.
        held = orchestrator.runs.items()
        return {run_id: encode(state) for run_id, state in held if not state.terminal}


async def held_runs(store: str, wf: Workflow, snapshot_every: int) -> dict[str, bytes]:
    """What a new owner holds of each running run once it has loaded every partition."""
    async with Engine(store, [wf], snapshot_every=snapshot_every) as engine:
        orchestrator = engine.orchestrator
        assert orchestrator is not None
        await asyncio.wait_for(orchestrator.settled.wait(), 60)
        assert all(orchestrator.knows(f"a-{n:02d}") for n in range(WAITING))
        return {run_id: encode(state) for run_id, state in orchestrator.runs.items()}


async def approve_the_rest(store: str, wf: Workflow, executions: Counter[str]) -> None:
    """Approve the runs still waiting: each ends once, and an ended one is not run again."""
    async with Engine(store, [wf], snapshot_every=4) as engine:
        again = await (await engine.start(wf, params={"n": 0}, run_id="a-00")).result(timeout=60)
        for n in range(APPROVED, WAITING):
            await engine.signal(f"a-{n:02d}", "approve", f"yes-{n}")
        results = [await engine.wait(f"a-{n:02d}", timeout=60) for n in range(WAITING)]
    assert again.output == {"n": 0, "approved": "yes-0"}
    assert [r.output for r in results] == [{"n": n, "approved": f"yes-{n}"} for n in range(WAITING)]
    assert all(executions[f"a-{n:02d}/report"] == 1 for n in range(WAITING))
    assert all(executions[f"a-{n:02d}/request"] == 1 for n in range(WAITING))


@pytest.fixture
def long_chains(monkeypatch: pytest.MonkeyPatch) -> None:
    """Deltas go on a base until the chain's length bound, whatever they weigh."""
    monkeypatch.setattr("deerflow.runtime._snapshots.DELTA_FRACTION", 1000.0)


async def test_a_new_owner_loads_a_chain_of_deltas_as_a_fold_of_everything(
    store, caplog, long_chains
):
    executions: Counter[str] = Counter()
    wf = approvals(executions)
    held = await leave_delta_chains(store, wf)
    async with Engine(store, orchestrate=False, work=False) as client:
        snapshots = Snapshots(client.log, client.topics)
        count = await client.log.partition_count(client.topics.history)
        newest = await newest_manifests(client.log, snapshots, count)
    chains = [len(m.get("chain", ())) for _, m in newest.values()]
    assert max(chains) >= 2, chains  # a base and deltas on it
    caplog.set_level(logging.INFO, logger="deerflow.orchestrator")
    from_chains = await held_runs(store, wf, snapshot_every=4)
    used, folded = loads(caplog)
    assert used == len(newest) and folded <= 2, (used, folded)
    assert not [r for r in caplog.records if "cannot be used" in r.getMessage()]
    # Byte for byte what the previous owner held (a fold from the first record gives the
    # same runs, though not the same bytes: an eager attempt's outcome may precede its
    # scheduling in the log).
    assert from_chains == held
    assert sorted(from_chains) == [f"a-{n:02d}" for n in range(APPROVED, WAITING)]
    assert sorted(await held_runs(store, wf, snapshot_every=0)) == sorted(held)
    await approve_the_rest(store, wf, executions)


async def spoil_a_delta(
    log: EventLog, tp: TopicPartition, manifest: dict[str, Any], *, lose: bool
) -> dict[str, Any]:
    """The newest manifest with a delta in the middle of its chain corrupted (its checksum),
    or missing (``lose``: a chunk in its place)."""
    chain = manifest.get("chain", [])
    if len(chain) < 2:
        return manifest
    middle = len(chain) // 2  # a delta: the chain's first entry is its base
    if lose:
        return {**manifest, "chain": [*chain[:middle], manifest["chunks"][0], *chain[middle + 1 :]]}
    [record, *_] = await log.read_partition(tp, chain[middle])
    spoilt = {**orjson.loads(record.value), "sha256": "0" * 64}
    [(_, offset)] = await log.append(
        [Message(tp.topic, orjson.dumps(spoilt), record.key, record.headers, tp.partition)]
    )
    return {**manifest, "chain": [*chain[:middle], offset, *chain[middle + 1 :]]}


@pytest.mark.parametrize("lose", [False, True], ids=["corrupt", "missing"])
async def test_a_chain_with_a_bad_delta_is_used_up_to_it_and_the_tail_folded(
    store, caplog, long_chains, lose
):
    executions: Counter[str] = Counter()
    wf = approvals(executions)
    held_before = await leave_delta_chains(store, wf)
    spoilt: list[TopicPartition] = []

    async def change(log: EventLog, tp: TopicPartition, manifest: dict[str, Any]) -> dict[str, Any]:
        changed = await spoil_a_delta(log, tp, manifest, lose=lose)
        if changed is not manifest:
            spoilt.append(tp)
        return changed

    count = await reseal(store, change)
    assert spoilt, "no partition has a chain of deltas"
    caplog.set_level(logging.INFO, logger="deerflow.orchestrator")
    held = await held_runs(store, wf, snapshot_every=4)
    messages = [r.getMessage() for r in caplog.records]
    bad = [m for m in messages if "cannot be used" in m]
    assert len(bad) == len(spoilt) and all("using the chain up to the delta" in m for m in bad)
    assert not [m for m in messages if "from its first offset" in m]  # no fold from offset 0
    used, folded = loads(caplog)
    async with Engine(store, orchestrate=False, work=False) as client:
        total = len(await records(client.log, client.topics.history))
    assert used == count and 0 < folded < total, (used, folded, total)
    # The runs the previous owner held (as a fold from the first record would: the same
    # runs, not always the same bytes, an eager attempt's outcome may precede its scheduling).
    assert sorted(held) == sorted(held_before)
    assert sorted(held) == [f"a-{n:02d}" for n in range(APPROVED, WAITING)]
    await approve_the_rest(store, wf, executions)


class _NoOwner:
    """The orchestrator's part of an :class:`Ownership`, which taking a snapshot does not use."""

    def fold_record(self, value: bytes, touched: dict[str, RunState]) -> None: ...
    def forgotten(self, run_ids: set[str]) -> None: ...
    def resume(self, live: list[RunState]) -> int:
        return 0

    def advance(self, runs: object) -> None: ...


async def test_runs_changed_while_a_snapshot_is_encoded_are_taken_as_they_end_up(monkeypatch):
    """A snapshot encodes its runs a slice at a time, other tasks running in between; those
    they change or end meanwhile are in it as they are at the end, not as first encoded."""
    monkeypatch.setattr("deerflow.runtime._snaptaking.SLICE_SECONDS", 0.0)  # yield after each
    log = MemoryEventLog()
    topics = Topics("t")
    snapshots = Snapshots(log, topics)
    outbox = Outbox(log, lambda appended: None, lambda message: [])
    owned = Ownership(log, topics.history, _NoOwner(), outbox, asyncio.Event(), snapshots=snapshots)
    owned.partitions = 1
    for n in range(50):
        state = owned.add(f"r-{n:02d}")
        state.requested, state.workflow = True, "w"
    owned._covered[0], owned._stamps[0] = 100, None

    async def meanwhile() -> None:
        await asyncio.sleep(0)  # the snapshot has begun
        owned.runs["r-00"].search_attributes["late"] = 1  # encoded first, changed after
        owned.changed("r-00")
        ended = owned.runs["r-49"]
        ended.status, ended.finished_at = "completed", time.time()
        owned.tombstone(ended)

    taken, _ = await asyncio.gather(owned._take(0), meanwhile())
    assert taken is not None
    covered, image, runs, delta, _ = taken
    written = decode_body(snapshots.body(0, image, runs), 0)
    held = {state.run_id: state for state in written.runs}
    assert not delta and covered == 100 and len(held) == 49
    assert held["r-00"].search_attributes == {"late": 1}
    assert [t[0] for t in written.ended] == ["r-49"]


def _tombstoned(covered: int, run_id: str) -> PartitionImage:
    """An image holding one tombstone: which writer's snapshot a loader got."""
    return PartitionImage(covered, [], [(run_id, 0, 1.0)], {})


async def test_an_owner_that_lost_its_partition_cannot_replace_the_new_owners_snapshot(store):
    topics = Topics.from_env(None)
    log = open_log(store)
    await log.start()
    try:
        await log.ensure_topic(topics.history, 1, keep_forever=True)
        old, new = Snapshots(log, topics), Snapshots(log, topics)
        assert await old.load([0], 1) == {}
        await old.write(0, 1, 0, old.encode(0, _tombstoned(0, "by-old")))
        loaded = await new.load([0], 1)  # the partition moves; the old owner does not know yet
        assert loaded[0].ended == [("by-old", 0, 1.0)]
        # Its late write before the new owner wrote anything is a snapshot as good as any.
        await old.write(
            0, 1, 0, old.encode(0, _tombstoned(0, "by-old-late"), delta=True), delta=True
        )
        await new.write(0, 1, 0, new.encode(0, _tombstoned(0, "by-new")))
        # From then on the old owner's writes are refused, base or delta, and change nothing.
        with pytest.raises(SnapshotFenced, match="partition 0 has a newer owner"):
            await old.write(0, 1, 0, old.encode(0, _tombstoned(0, "x"), delta=True), delta=True)
        with pytest.raises(SnapshotFenced):
            await old.write(0, 1, 0, old.encode(0, _tombstoned(0, "x")))
        await new.write(0, 1, 0, new.encode(0, _tombstoned(0, "by-new-2")))
        assert (await Snapshots(log, topics).load([0], 1))[0].ended == [("by-new-2", 0, 1.0)]
    finally:
        await log.stop()


WRITTEN = re.compile(r"snapshot of partition (\d+) at (\d+) written")


async def test_snapshots_keep_their_cadence_under_steady_traffic(store, caplog):
    """Runs start and end without a pause: the outbox is never idle, and snapshots are still
    written about every ``snapshot_every`` records of each partition (on Kafka, where a
    write takes a few round trips and one is in flight per partition at a time, the records
    folded meanwhile count too: the cadence is set higher there)."""
    every = 150 if store.startswith("kafka") else 40
    executions: Counter[str] = Counter()
    wf = shipping(executions)
    caplog.set_level(logging.DEBUG, logger="deerflow.orchestrator")
    async with Engine(store, [wf], snapshot_every=every, partitions=2) as engine:
        orchestrator = engine.orchestrator
        assert orchestrator is not None
        await asyncio.wait_for(orchestrator.settled.wait(), 30)
        started = 0

        async def stream() -> None:
            nonlocal started
            while started < 240:
                started += 1
                handle = await engine.start(wf, params={"order": started})
                assert (await handle.result(timeout=60)).status == "completed"

        await asyncio.gather(*(stream() for _ in range(16)))  # 16 runs in flight at all times
        ends = Counter(r.partition for r in await records(engine.log, engine.topics.history))
    covered: dict[int, list[int]] = {0: [], 1: []}
    for record in caplog.records:
        if found := WRITTEN.search(record.getMessage()):
            covered[int(found[1])].append(int(found[2]))
    for partition, offsets in covered.items():
        # written while the traffic lasted, not only at the orderly stop; the usual gap close
        # to the cadence (a snapshot waits for the decisions it holds to be durable; waiting
        # for an idle outbox, the gaps were 4-5 times the cadence), and a slow write on a
        # loaded machine stretching one gap, not the cadence
        points = sorted(set([0, *offsets]))
        gaps = [b - a for a, b in itertools.pairwise(points)]
        assert len(offsets) >= ends[partition] // (3 * every), (partition, offsets, ends)
        assert statistics.median(gaps) <= 2 * every, (partition, points)
        assert max(gaps) <= 6 * every, (partition, points)
