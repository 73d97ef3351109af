"""Schedules on a real engine: one run per tick, catchup after downtime, pause, backfill.

The clock is the test's own (:class:`Clock`): a tick comes when the test moves the clock,
never after a sleep. Memory and SQLite run in one process; restarts (catchup, pause) run on
SQLite and Kafka (Tansu); on Kafka two engines also share one consumer group, each firing
the schedules of its partitions (``test_schedule_processes.py``: two ``deerflow serve``
processes).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from deerflow import Engine, Schedule, Workflow
from deerflow.cli._loader import load_module_workflows
from deerflow.connectors import ScheduleControl, ScheduleSource
from deerflow.connectors.schedule import ScheduleEntry, ensure_schedules_topic, schedule_entries
from deerflow.log.base import TopicPartition
from deerflow.observability.metrics import EngineMetrics
from tests.connectors.conftest import ROOT, eventually
from tests.services import unique_name

START = 1_800_000_000.0  # a whole minute


class Clock:
    """A clock the test moves."""

    def __init__(self, now: float = START + 1) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def ticking(
    sink: Path, name: str = "ticker", overlap: Overlap | None = None, **options: Any
) -> Workflow:
    """A workflow on a schedule whose task records each tick it ran for in ``sink``
    (taking 0.1 s within ``overlap`` when given, to count the runs at once)."""
    wf = Workflow(name=name)
    wf.add_trigger(Schedule(name=f"{name}-every-minute", **({"every": "1m"} | options)))

    @wf.task(id="record")
    def record(context: Any) -> str:
        event = context.trigger_event
        if overlap is not None:
            with overlap:
                time.sleep(0.1)
        with sqlite3.connect(sink) as db:
            db.execute("create table if not exists ran (schedule, tick, backfill)")
            db.execute(
                "insert into ran values (?, ?, ?)",
                (event.schedule, event.scheduled_time.timestamp(), event.backfill),
            )
        return event.scheduled_time.isoformat()

    return wf


def ran(sink: Path) -> list[float]:
    """The ticks the task ran for, in order of their runs."""
    if not sink.exists():
        return []
    with sqlite3.connect(sink) as db:
        # The task's connection creates the file before the table: read none until it has.
        db.execute("create table if not exists ran (schedule, tick, backfill)")
        return [t for (t,) in db.execute("select tick from ran order by rowid")]


@asynccontextmanager
async def serving(
    store: str, wf: Workflow, clock: Clock
) -> AsyncIterator[tuple[Engine, ScheduleSource]]:
    """An engine running ``wf`` and a schedule source firing its schedules on ``clock``."""
    async with Engine(store, [wf]) as engine:
        source = ScheduleSource(engine, schedule_entries([wf]), clock=clock, max_wait=0.02)
        await engine.add_service(source)
        try:
            yield engine, source
        finally:
            await source.stop()


def entry(wf: Workflow) -> ScheduleEntry:
    return schedule_entries([wf])[0]


async def armed(source: ScheduleSource, name: str) -> None:
    """Wait until ``source`` fires ``name`` and has recorded its first cursor."""
    await eventually(
        lambda: _true(name in source.owned and source.book.get(name).cursor is not None),
        what=f"{name} served",
    )


async def _true(value: bool) -> bool:
    return value


async def ticks_ran(sink: Path, count: int) -> None:
    async def enough() -> bool:
        return len(ran(sink)) >= count

    await eventually(enough, what=f"{count} ticks run")


@pytest.fixture(params=["sqlite", pytest.param("kafka", marks=pytest.mark.kafka)])
def durable(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store that outlives the engines of a test (its restarts)."""
    if request.param == "kafka":
        return str(request.getfixturevalue("kafka_url"))
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "memory":
        return f"memory://{unique_name('log')}"
    return f"sqlite:///{tmp_path / 'store.db'}"


async def test_each_tick_is_one_run_with_its_scheduled_time(store: str, tmp_path: Path) -> None:
    sink, clock = tmp_path / "sink.db", Clock()
    wf = ticking(sink)
    async with serving(store, wf, clock) as (engine, source):
        await armed(source, "ticker-every-minute")
        for minute in (1, 2, 3):
            clock.now = START + 60 * minute + 0.5
            await ticks_ran(sink, minute)
        assert ran(sink) == [START + 60, START + 120, START + 180]
        run = await engine.wait(entry(wf).run_id(START + 120), timeout=10)
        assert run.output == datetime.fromtimestamp(START + 120, UTC).isoformat()
        assert source.fired == 3
        # No tick between two ticks: nothing more runs however often the loop looks.
        clock.now = START + 239
        await source.step()
        assert len(ran(sink)) == 3
        # The schedules topic is compacted: one record of the schedule, not one per tick.
        topic, count = await ensure_schedules_topic(engine)
        tps = {TopicPartition(topic, p): 0 for p in range(count)}
        kept = [r for rs in (await engine.log.read_partitions(tps)).values() for r in rs]
        assert [r.key for r in kept] == ["ticker-every-minute"]
        assert kept[0].offset >= 3  # the first cursor and three ticks' were appended


@pytest.mark.parametrize(
    ("catchup", "expected"),
    [
        ("skip", [START + 360]),
        ("latest", [START + 300, START + 360]),
        ("all", [START + 120, START + 180, START + 240, START + 300, START + 360]),
    ],
)
async def test_a_restart_after_downtime_runs_missed_ticks_as_catchup_says(
    durable: str, tmp_path: Path, catchup: str, expected: list[float]
) -> None:
    store, sink, clock = durable, tmp_path / "sink.db", Clock()
    wf = ticking(sink, catchup=catchup, grace=5)
    async with serving(store, wf, clock) as (_, source):
        await armed(source, "ticker-every-minute")
        clock.now = START + 60.5
        await ticks_ran(sink, 1)
    clock.now = START + 330  # down over four ticks, the last one 30 s ago
    async with serving(store, wf, clock) as (_, source):
        await armed(source, "ticker-every-minute")
        await eventually(
            lambda: _true(source.book.get("ticker-every-minute").cursor == START + 300)
        )
        clock.now = START + 360.5  # then the next tick, on time
        await ticks_ran(sink, 1 + len(expected))
    assert sorted(ran(sink)) == [START + 60, *expected]  # missed ticks run side by side


@pytest.mark.parametrize(
    ("catchup", "expected"),
    [
        ("skip", [START + 60]),
        ("latest", [START, START + 60]),
        ("all", [START + 60 * m for m in range(-5, 2)]),
    ],
)
async def test_a_schedule_first_served_after_its_start_runs_the_ticks_since_as_catchup_says(
    store: str, tmp_path: Path, catchup: str, expected: list[float]
) -> None:
    sink, clock = tmp_path / "sink.db", Clock(START + 30)  # six ticks since start, all late
    start = datetime.fromtimestamp(START - 300, UTC)
    wf = ticking(sink, catchup=catchup, grace=5, start=start)
    async with serving(store, wf, clock) as (engine, source):
        await armed(source, "ticker-every-minute")
        await eventually(lambda: _true(source.book.get("ticker-every-minute").cursor == START))
        clock.now = START + 60.5  # then the next tick, on time
        await ticks_ran(sink, len(expected))
        await engine.wait(entry(wf).run_id(START + 60), timeout=10)
        assert len(await engine.list_runs(workflow="ticker")) == len(expected)
    assert sorted(ran(sink)) == expected


async def test_a_schedule_first_served_without_start_begins_with_its_next_tick(
    tmp_path: Path,
) -> None:
    sink, clock = tmp_path / "sink.db", Clock(START + 2)  # a tick 2 s ago, within grace
    wf = ticking(sink, catchup="all")
    async with serving(f"memory://{unique_name('log')}", wf, clock) as (engine, source):
        await armed(source, "ticker-every-minute")
        assert source.book.get("ticker-every-minute").cursor == START
        clock.now = START + 60.5
        await ticks_ran(sink, 1)
        await engine.wait(entry(wf).run_id(START + 60), timeout=10)
        assert [r.run_id for r in await engine.list_runs(workflow="ticker")] == [
            entry(wf).run_id(START + 60)
        ]


async def test_ticks_wait_while_max_running_runs_run_then_catch_up(tmp_path: Path) -> None:
    store, clock, release = f"sqlite:///{tmp_path / 'store.db'}", Clock(), threading.Event()
    started: list[float] = []
    wf = Workflow(name="held")
    wf.add_trigger(Schedule(name="held-every-minute", every="1m", catchup="all", grace=5))

    @wf.task(id="work")
    def work(context: Any) -> float:
        tick = context.trigger_event.scheduled_time.timestamp()
        started.append(tick)
        if tick == START + 60:
            release.wait(30)
        return float(tick)

    async with Engine(store, [wf]) as engine:
        source = ScheduleSource(
            engine, schedule_entries([wf]), clock=clock, max_wait=0.02, max_running=1
        )
        await engine.add_service(source)
        try:
            await armed(source, "held-every-minute")
            clock.now = START + 60.5
            await eventually(lambda: _true(started == [START + 60]), what="the first tick runs")
            held = source.held
            clock.now = START + 180.5  # two more ticks pass while one run is running
            await eventually(lambda: _true(source.held > held + 3), what="ticks held")
            assert started == [START + 60]
            assert len(await engine.list_runs(workflow="held")) == 1
            release.set()
            await eventually(lambda: _true(len(started) == 3), what="the held ticks run")
            assert sorted(started) == [START + 60, START + 120, START + 180]
            assert source.missed == 0
        finally:
            release.set()
            await source.stop()


def ticks_counted(metrics: EngineMetrics, name: str) -> dict[str, float]:
    """The ``deerflow_schedule_ticks_total`` of schedule ``name`` by outcome, as scraped."""
    return {
        s.labels["outcome"]: s.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for s in family.samples
        if s.name == "deerflow_schedule_ticks_total" and s.labels["schedule"] == name
    }


@asynccontextmanager
async def metered(store: str, wf: Workflow, clock: Clock) -> AsyncIterator[EngineMetrics]:
    """An engine with its metrics started before it fires ``wf``'s schedules on ``clock``."""
    async with Engine(store, [wf]) as engine:
        metrics = EngineMetrics(engine)
        await metrics.start()
        source = ScheduleSource(engine, schedule_entries([wf]), clock=clock, max_wait=0.02)
        await engine.add_service(source)
        try:
            await armed(source, entry(wf).name)
            yield metrics
        finally:
            await source.stop()
            await metrics.stop()


async def counted(metrics: EngineMetrics, name: str, expected: dict[str, float]) -> None:
    """Wait until the scraped ticks of ``name`` are ``expected`` (a tick is counted once its
    cursor is written, which may be after its run ended)."""
    await eventually(
        lambda: _true(ticks_counted(metrics, name) == expected), what=f"{name}: {expected}"
    )


async def test_metrics_count_fired_missed_and_backfilled_ticks(tmp_path: Path) -> None:
    store, sink, clock = f"sqlite:///{tmp_path / 'store.db'}", tmp_path / "sink.db", Clock()
    wf, name = ticking(sink, catchup="latest", grace=5), "ticker-every-minute"
    async with metered(store, wf, clock) as metrics:
        clock.now = START + 60.5
        await ticks_ran(sink, 1)
        await counted(metrics, name, {"fired": 1})
    clock.now = START + 330  # down over four ticks: the newest runs, three are let go
    async with metered(store, wf, clock) as metrics:
        await ticks_ran(sink, 2)
        await counted(metrics, name, {"fired": 1, "missed": 3})
        first, last = (datetime.fromtimestamp(START + s, UTC) for s in (120, 240))
        control = ScheduleControl(metrics.engine, clock=clock)
        assert len((await control.backfill(name, first, last)).started) == 3
        assert ticks_counted(metrics, name) == {"fired": 1, "missed": 3, "backfilled": 3}


async def test_a_pause_holds_across_a_restart_and_a_resume_skips_the_paused_ticks(
    durable: str, tmp_path: Path
) -> None:
    store, sink, clock = durable, tmp_path / "sink.db", Clock()
    wf = ticking(sink, catchup="all")
    name = "ticker-every-minute"
    async with serving(store, wf, clock) as (engine, source):
        await armed(source, name)
        control = ScheduleControl(engine, clock=clock)
        assert await control.pause(name) is True
        assert await control.pause(name) is False  # already paused
        await eventually(lambda: _true(source.book.get(name).paused), what="pause applied")
        clock.now = START + 120.5
        await source.step()
        assert ran(sink) == []
    async with serving(store, wf, clock) as (engine, source):
        await armed(source, name)
        clock.now = START + 180.5
        await source.step()
        assert ran(sink) == []
        assert [(s.name, s.paused) for s in await ScheduleControl(engine).list_schedules()] == [
            (name, True)
        ]
        assert await ScheduleControl(engine, clock=clock).resume(name) is True
        await eventually(lambda: _true(not source.book.get(name).paused), what="resume applied")
        clock.now = START + 240.5
        await ticks_ran(sink, 1)
    assert ran(sink) == [START + 240]  # nothing of the paused minutes, even with catchup="all"


class Overlap:
    """How many task bodies run at once, at most."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = self.peak = 0

    def __enter__(self) -> None:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def __exit__(self, *exc: object) -> None:
        with self.lock:
            self.now -= 1


async def test_backfill_runs_each_tick_once_at_most_n_at_a_time(store: str, tmp_path: Path) -> None:
    sink, clock, overlap = tmp_path / "sink.db", Clock(START + 3600), Overlap()
    wf = ticking(sink, overlap=overlap)
    name = "ticker-every-minute"
    async with serving(store, wf, clock) as (engine, source):
        await armed(source, name)
        control = ScheduleControl(engine, clock=clock)
        first = datetime.fromtimestamp(START + 60, UTC)
        last = datetime.fromtimestamp(START + 600, UTC)
        ends: list[str] = []
        result = await control.backfill(
            name, first, last, max_parallel=3, on_end=lambda rid, status: ends.append(status)
        )
        assert result.ticks == 10 and len(result.started) == 10 and result.skipped == []
        assert set(result.statuses.values()) == {"completed"} and len(ends) == 10
        assert sorted(ran(sink)) == [START + 60 * k for k in range(1, 11)]
        assert overlap.peak == 3
        again = await control.backfill(name, first, datetime.fromtimestamp(START + 720, UTC))
        assert len(again.skipped) == 10 and len(again.started) == 2
        assert len(ran(sink)) == 12


async def test_backfill_refuses_an_unknown_schedule_or_a_reversed_range(store: str) -> None:
    wf = ticking(Path("unused.db"))
    async with Engine(store, [wf]) as engine:
        control = ScheduleControl(engine)
        with pytest.raises(
            Exception, match="no schedule named 'nope' \\(known: ticker-every-minute\\)"
        ):
            await control.pause("nope")
        with pytest.raises(Exception, match="--from must not be after --to"):
            await control.backfill(
                "ticker-every-minute",
                datetime(2026, 1, 2, tzinfo=UTC),
                datetime(2026, 1, 1, tzinfo=UTC),
            )


@pytest.mark.kafka
async def test_two_engines_on_kafka_run_each_tick_once_and_one_takes_over(
    kafka_url: str, tmp_path: Path
) -> None:
    sink, clock = tmp_path / "sink.db", Clock()
    workflows = [ticking(sink, f"ticker{i}") for i in range(4)]
    names = [e.name for e in schedule_entries(workflows)]
    async with (
        Engine(kafka_url, workflows) as first,
        Engine(kafka_url, workflows) as second,
    ):
        sources = [
            ScheduleSource(engine, schedule_entries(workflows), clock=clock, max_wait=0.02)
            for engine in (first, second)
        ]
        for engine, source in zip((first, second), sources, strict=True):
            await engine.add_service(source)

        async def shared() -> bool:
            owners = [n for s in sources for n in s.owned]
            return sorted(owners) == sorted(names) and all(s.owned for s in sources)

        await eventually(shared, within=60, what="the schedules shared by both engines")
        for name in names:
            owner = next(s for s in sources if name in s.owned)
            await armed(owner, name)
        for minute in (1, 2, 3):
            clock.now = START + 60 * minute + 0.5
            await ticks_ran(sink, 4 * minute)
        assert sorted(ran(sink)) == sorted(START + 60 * m for m in (1, 2, 3) for _ in range(4))
        assert [s.fired for s in sources] == [3 * len(s.owned) for s in sources]

        await sources[0].stop()  # the other engine takes its schedules over
        await eventually(
            lambda: _true(sorted(sources[1].owned) == sorted(names)), within=60, what="takeover"
        )
        clock.now = START + 240.5
        await ticks_ran(sink, 16)
        await sources[1].step()
        assert sorted(ran(sink)) == sorted(START + 60 * m for m in (1, 2, 3, 4) for _ in range(4))


async def test_the_guides_example_runs_each_schedule_on_its_ticks() -> None:
    workflows, _ = load_module_workflows(str(ROOT / "examples" / "schedules.py"))
    at = datetime(2026, 10, 25, 1, 59, tzinfo=UTC).timestamp()  # 02:59 in Paris (CET)
    clock = Clock(at)
    async with Engine(f"memory://{unique_name('log')}", workflows) as engine:
        entries = schedule_entries(workflows)
        source = ScheduleSource(engine, entries, clock=clock, max_wait=0.02)
        await engine.add_service(source)
        for e in entries:
            await armed(source, e.name)
        clock.now = at + 90  # past 03:00 in Paris and the 5-minute tick's jitter (< 30 s)
        report = await engine.wait(entries[0].run_id(at + 60), timeout=30)
        assert report.output == {"hour_ending": "2026-10-25T03:00:00+01:00", "backfill": False}
        check = await engine.wait(entries[1].run_id(at + 60), timeout=30)
        assert check.output == {"checked_at": "2026-10-25T02:00:00+00:00", "ok": True}

        clock.now = at + 60 + 30 * 60 + 50  # down for 30 minutes: catchup="skip"
        await eventually(
            lambda: _true(source.book.get("health").cursor == at + 60 + 30 * 60),
            what="the missed ticks handled",
        )
        runs = await engine.list_runs(workflow="health_check")
        # The five missed ticks do not run; the last one, within its grace, does.
        assert len(runs) == 2 and runs[0].run_id == entries[1].run_id(at + 60 + 30 * 60)
        await source.stop()
