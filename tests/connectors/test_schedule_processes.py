"""Two ``deerflow serve`` processes on Kafka share a schedule: each tick runs once, and when
one stops the other takes the schedule over without losing a tick (real time: a 1 s
schedule, about fifteen ticks)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from tests.web.conftest import Process, process_env

APP = """
import os
import sqlite3

from deerflow import Schedule, Workflow

wf = Workflow(name="every_second")
wf.add_trigger(Schedule(name="every-second", every="1s", catchup="all"))


@wf.task(id="record")
def record(context):
    with sqlite3.connect(os.environ["SINK_DB"], timeout=30) as db:
        db.execute("create table if not exists ran (tick real, pid int)")
        db.execute(
            "insert into ran values (?, ?)",
            (context.trigger_event.scheduled_time.timestamp(), os.getpid()),
        )
"""


def ticks(sink: Path) -> list[float]:
    if not sink.exists():
        return []
    with sqlite3.connect(sink, timeout=30) as db:
        db.execute("create table if not exists ran (tick real, pid int)")
        return [t for (t,) in db.execute("select tick from ran order by tick")]


def wait_for(sink: Path, count: int, within: float) -> None:
    deadline = time.monotonic() + within
    while len(ticks(sink)) < count:
        if time.monotonic() > deadline:
            pytest.fail(f"{len(ticks(sink))} of {count} ticks ran in {within}s")
        time.sleep(0.2)


@pytest.mark.kafka
@pytest.mark.timeout(240)
def test_two_serve_processes_run_each_tick_once_and_survive_one_stopping(
    kafka_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, sink = tmp_path / "every_second.py", tmp_path / "sink.db"
    app.write_text(APP)
    env = process_env(tmp_path, DEERFLOW_PREFIX=f"sp{time.monotonic_ns()}", SINK_DB=str(sink))
    command = ["serve", str(app), "--store", kafka_url, "--port", "0"]
    first, second = Process(command, env), Process(command, env)
    try:
        start = len(ticks(sink))
        wait_for(sink, start + 6, within=60)
        first.stop()  # its partitions, the schedule's among them perhaps, move to the other
        stopped = len(ticks(sink))
        wait_for(sink, stopped + 6, within=90)
        log = second.output()
    finally:
        first.stop()
        second.stop()
    ran = ticks(sink)
    assert len(ran) == len(set(ran)), "a tick ran twice"
    assert ran == [ran[0] + k for k in range(len(ran))], "a tick was lost"
    assert "schedules: firing every-second" in log, log
