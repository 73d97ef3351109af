"""A run index written with an older schema is migrated in place, nothing lost.

``data/runindex-schema2.sqlite`` is a SQLite log and its run index as schema 2 wrote them (the
state machine's state in a column of its own): three runs of the workflows below (a door
``door-a`` left ``opened``, a door ``door-b`` ended ``gone``, a plain run), and the row of a
run whose history is no longer in the log (``purged-1``, as an archived and purged run
leaves it: a rebuild from the history could not bring it back).
"""

# mypy: disable-error-code="name-defined"
# (a state machine's class body uses names its metaclass provides)

from __future__ import annotations

import logging
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from deerflow import Engine, State, StateMachine, Transition, Workflow
from deerflow.runtime._runrows import RunQuery

FIXTURE = Path(__file__).parent / "data" / "runindex-schema2.sqlite"


def _workflows() -> list[Workflow]:
    door = Workflow(name="door")

    @door.state_machine
    class Door(StateMachine):
        closed, opened, gone = State(initial=True), State(), State(final=True)
        open = Transition(source=closed, target=opened)
        shut = Transition(source=opened, target=closed)
        remove = Transition(source=[closed, opened], target=gone)

    plain = Workflow(name="plain")

    @plain.task()
    async def only(context: Any) -> int:
        return int(context.params["n"]) * 2

    return [door, plain]


def _copy_fixture(tmp_path: Path) -> Path:
    """The fixture where the test may change it; its index names the log it indexes."""
    path = tmp_path / "log.db"
    shutil.copy(FIXTURE, path)
    with sqlite3.connect(path) as conn:
        conn.execute(
            "UPDATE runindex_meta SET value = ? WHERE name = 'identity'",
            (f"sqlite:///{path} mig.history",),
        )
    return path


async def test_an_index_of_schema_2_migrates_in_place_and_keeps_every_row(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _copy_fixture(tmp_path)
    with caplog.at_level(logging.INFO, logger="deerflow.runindex"):
        async with Engine(f"sqlite:///{path}", _workflows(), prefix="mig") as engine:
            runs = {r.run_id: r for r in await engine.list_runs()}
            # The purged run's row is kept: the index was migrated, not rebuilt.
            assert sorted(runs) == ["door-a", "door-b", "plain-1", "purged-1"]
            states = {rid: (r.status, r.state) for rid, r in runs.items()}
            assert states == {
                "door-a": ("running", "opened"),
                "door-b": ("completed", "gone"),
                "plain-1": ("completed", None),
                "purged-1": ("running", "closed"),
            }
            assert [r.run_id for r in await engine.list_runs(state="opened")] == ["door-a"]
            assert [r.run_id for r in await engine.list_runs(state="closed")] == ["purged-1"]
            assert (await engine.get_run("plain-1")).output == 42
            # The migrated index goes on following the history.
            await engine.send("door-a", "shut")
            closed = await engine.list_runs(state="closed")
            assert sorted(r.run_id for r in closed) == ["door-a", "purged-1"]
    assert "schema 2 migrated to 3" in caplog.text
    assert "rebuilding" not in caplog.text
    with sqlite3.connect(path) as conn:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(runindex_runs)")}
        schema = conn.execute("SELECT value FROM runindex_meta WHERE name = 'schema'").fetchone()
    assert "extras" in columns and "machine_state" not in columns
    assert schema == ("3",)


async def test_a_migrated_index_opens_again_as_it_is(tmp_path: Path) -> None:
    path = _copy_fixture(tmp_path)
    for _ in range(2):
        async with Engine(f"sqlite:///{path}", _workflows(), prefix="mig") as engine:
            assert len(await engine.list_runs()) == 4


async def test_a_filter_no_extension_keeps_is_an_error_naming_it(tmp_path: Path) -> None:
    async with Engine(f"sqlite:///{tmp_path / 'log.db'}", _workflows()) as engine:
        with pytest.raises(ValueError, match=r"^no run filter 'colour' \(filters of extensions: "):
            await engine.index.summaries(RunQuery(extras={"colour": "red"}))
