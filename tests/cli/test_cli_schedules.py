"""``deerflow schedules list | pause | resume | backfill`` as processes, against the store of
an engine running the schedule's workflow in the test's process."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from deerflow import Engine
from deerflow.cli._loader import load_module_workflows
from tests.cli.conftest import ROOT, Shell
from tests.services import unique_name

APP = str(ROOT / "tests" / "cli" / "schedule_app.py")
BAD = ROOT / "tests" / "cli" / "bad_schedule_app.py"


@pytest.fixture
async def sched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Shell]:
    monkeypatch.setenv("DEERFLOW_PREFIX", unique_name("s").replace("-", ""))
    store = f"sqlite:///{tmp_path / 'cli.db'}"
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="200")
    env.pop("DEERFLOW_STORE", None)
    env.pop("DEERFLOW_APP", None)
    async with Engine(store, load_module_workflows(APP)[0]) as engine:
        yield Shell(engine, store, env, tmp_path)


async def test_list_pause_and_resume_a_schedule(sched: Shell) -> None:
    code, out, err = await sched.run("schedules", "list", "--app", APP)
    assert code == 0, err
    header, row = out.splitlines()
    assert header.split()[:3] == ["NAME", "WORKFLOW", "WHEN"]
    assert row.split()[:4] == ["hourly-report", "report", "cron", "0"]
    assert "(Europe/Paris)" in row and "active" in row

    code, out, _ = await sched.run("schedules", "pause", "hourly-report", "--app", APP)
    assert (code, out.strip()) == (0, "hourly-report paused")
    code, out, _ = await sched.run("schedules", "pause", "hourly-report", "--app", APP)
    assert (code, out.strip()) == (0, "hourly-report was paused already")
    listed = await sched.json("schedules", "list", "--app", APP)
    assert [(s["name"], s["paused"], s["next_tick"]) for s in listed] == [
        ("hourly-report", True, None)
    ]

    code, out, _ = await sched.run("schedules", "resume", "hourly-report", "--app", APP)
    assert (code, out.strip()) == (0, "hourly-report resumed")
    (entry,) = await sched.json("schedules", "list", "--app", APP)
    assert entry["paused"] is False
    assert entry["next_tick"].endswith(("+01:00", "+02:00"))  # Paris time


async def test_without_app_the_commands_use_the_deerflow_app_variable(sched: Shell) -> None:
    sched.env["DEERFLOW_APP"] = APP
    code, out, err = await sched.run("schedules", "pause", "hourly-report")
    assert (code, out.strip()) == (0, "hourly-report paused"), err
    [entry] = await sched.json("schedules", "list")
    assert (entry["name"], entry["paused"]) == ("hourly-report", True)
    # --app still wins over the variable.
    sched.env["DEERFLOW_APP"] = str(BAD)
    code, out, err = await sched.run("schedules", "list", "--app", APP)
    assert code == 0 and "hourly-report" in out, err


async def test_backfill_runs_each_tick_and_a_second_backfill_skips_them(sched: Shell) -> None:
    args = ("schedules", "backfill", "hourly-report", "--app", APP)
    window = ("--from", "2026-10-25T01:00", "--to", "2026-10-25T03:30")
    code, out, err = await sched.run(*args, *window, "--max-parallel", "2")
    assert code == 0, err
    assert "backfill hourly-report: 4 ticks, at most 2 at once" in err
    assert out.count(" completed\n") == 4  # 01:00, 02:00 CEST, 02:00 CET, 03:00
    assert out.splitlines()[-1] == (
        "backfill hourly-report: 4 ticks, 4 runs started (4 completed, 0 not), 0 had run already"
    )
    runs = await sched.engine.list_runs(workflow="report")
    assert sorted(r.output for r in runs) == [
        "2026-10-25T01:00:00+02:00",
        "2026-10-25T02:00:00+01:00",
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T03:00:00+01:00",
    ]

    code, out, err = await sched.run(
        *args, "--from", "2026-10-25T00:00", "--to", "2026-10-25T03:00", "--json"
    )
    assert code == 0, err
    result = json.loads(out)
    assert (result["ticks"], len(result["started"]), len(result["skipped"])) == (5, 1, 4)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("list",), "error: give --app FILE.py (or set DEERFLOW_APP) defining the workflows"),
        (
            (
                "backfill",
                "hourly-report",
                "--app",
                APP,
                "--from",
                "2026-01-01",
                "--to",
                "2026-01-02",
                "--max-parallel",
                "0",
            ),
            "error: --max-parallel must be 1 or more, not 0",
        ),
        (
            ("list", "--app", str(BAD)),
            "error: workflow 'bad': Schedule(cron='0 25 * * *'): invalid",
        ),
        (
            ("pause", "nightly", "--app", APP),
            "error: no schedule named 'nightly' (known: hourly-report)",
        ),
        (
            (
                "backfill",
                "hourly-report",
                "--app",
                APP,
                "--from",
                "yesterday",
                "--to",
                "2026-01-01",
            ),
            "error: --from 'yesterday' is not an ISO-8601 time",
        ),
        (
            (
                "backfill",
                "hourly-report",
                "--app",
                APP,
                "--from",
                "2026-02-01",
                "--to",
                "2026-01-01",
            ),
            "error: schedule 'hourly-report': --from must not be after --to",
        ),
        (
            (
                "backfill",
                "hourly-report",
                "--app",
                APP,
                "--from",
                "2020-01-01",
                "--to",
                "2026-01-01",
            ),
            "error: schedule 'hourly-report': more than 10000 ticks",
        ),
    ],
)
async def test_a_schedules_error_is_one_line_and_exit_2(
    sched: Shell, args: tuple[str, ...], message: str
) -> None:
    code, _, err = await sched.run("schedules", *args)
    assert code == 2
    assert err.startswith(message), err
    assert len(err.strip().splitlines()) == 1, err
