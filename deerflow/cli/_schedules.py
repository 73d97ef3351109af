"""``deerflow schedules list | pause NAME | resume NAME | backfill NAME``.

Each command reads the schedules from the ``--app`` files (default ``$DEERFLOW_APP``, as for
``deerflow serve``) and their state from the store; a
pause or a resume is a record the process firing the schedule applies within a second.
``backfill`` requests the runs and waits for them: a ``deerflow serve`` or ``deerflow worker``
on the store runs them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from deerflow.cli._base import (
    JsonOpt,
    StoreOpt,
    emit_json,
    err,
    execute,
    fail,
    open_engine,
    out,
)
from deerflow.cli._table import Column, fitted_table
from deerflow.connectors.schedule import BACKFILL_PARALLEL, ScheduleControl

schedules_app = typer.Typer(
    help="List, pause, resume and backfill schedules.", no_args_is_help=True
)
AppOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--app",
        envvar="DEERFLOW_APP",
        help="FILE.py defining the workflows whose schedules to use; repeat it for several "
        "files. Default $DEERFLOW_APP (several files separated by spaces).",
    ),
]
NameArg = Annotated[str, typer.Argument(help="Schedule name (see `deerflow schedules list`).")]
_COLUMNS = (
    Column("NAME", 12, 3),
    Column("WORKFLOW", 8, 2),
    Column("WHEN", 10, 1),
    Column("STATE", 6, 4),
    Column("LAST TICK", 10, 0),
    Column("NEXT TICK", 10, 0),
)


def _apps(apps: list[str] | None) -> list[str]:
    if not apps:
        raise fail(
            "give --app FILE.py (or set DEERFLOW_APP) defining the workflows whose schedules to use"
        )
    return apps


@schedules_app.command("list")
def schedules_list(app: AppOpt = None, store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """List the schedules with their state, last tick and next tick."""
    files = _apps(app)

    async def main() -> None:
        async with open_engine(store, files) as engine:
            infos = await ScheduleControl(engine).list_schedules()
        if as_json:
            emit_json([i.as_json() for i in infos])
            return
        if not infos:
            err.print("no schedules in the --app files")
            return
        rows = [
            (
                i.name,
                i.workflow,
                i.when,
                "paused" if i.paused else "active",
                i.last_tick or "-",
                i.next_tick or "-",
            )
            for i in infos
        ]
        out.print(fitted_table(_COLUMNS, rows, out.width))

    execute(main, store)


@schedules_app.command("pause")
def schedules_pause(name: NameArg, app: AppOpt = None, store: StoreOpt = None) -> None:
    """Pause a schedule: its ticks start no run until it is resumed (a restart keeps it)."""
    _control(name, _apps(app), store, pause=True)


@schedules_app.command("resume")
def schedules_resume(name: NameArg, app: AppOpt = None, store: StoreOpt = None) -> None:
    """Resume a schedule: ticks from now on run, those while it was paused do not."""
    _control(name, _apps(app), store, pause=False)


def _control(name: str, files: list[str], store: str | None, *, pause: bool) -> None:
    async def main() -> bool:
        async with open_engine(store, files) as engine:
            control = ScheduleControl(engine)
            return await (control.pause(name) if pause else control.resume(name))

    changed = execute(main, store)
    verb = "paused" if pause else "resumed"
    out.print(f"{name} {verb}" if changed else f"{name} was {verb} already", highlight=False)


def _moment(text: str, option: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise fail(
            f"{option} {text!r} is not an ISO-8601 time (e.g. 2026-05-01T00:00, in the "
            "schedule's zone unless it names one)"
        ) from None


@schedules_app.command("backfill")
def schedules_backfill(
    name: NameArg,
    first: Annotated[
        str, typer.Option("--from", help="First tick (ISO-8601; the schedule's zone if none).")
    ],
    last: Annotated[str, typer.Option("--to", help="Last tick (ISO-8601), included.")],
    max_parallel: Annotated[
        int, typer.Option("--max-parallel", help="Runs at once, at most (1 or more).")
    ] = BACKFILL_PARALLEL,
    app: AppOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the ticks from --from to --to, oldest first, and wait for their runs.

    Ticks that have a run already are skipped. Exit 1 if a run did not complete.
    """
    files = _apps(app)
    start, end = _moment(first, "--from"), _moment(last, "--to")
    if max_parallel < 1:
        raise fail(f"--max-parallel must be 1 or more, not {max_parallel}")

    async def main() -> tuple[int, int, int, int]:
        async with open_engine(store, files) as engine:
            control = ScheduleControl(engine)
            planned = control.plan(name, start, end)
            if not as_json:
                err.print(f"backfill {name}: {len(planned)} ticks, at most {max_parallel} at once")

            def ended(run_id: str, status: str) -> None:
                if not as_json:
                    out.print(f"{run_id} {status}", highlight=False)

            result = await control.backfill(
                name, start, end, max_parallel=max_parallel, on_end=ended
            )
        if as_json:
            emit_json(result.as_json())
        return result.ticks, len(result.started), len(result.skipped), result.failed

    ticks, started, skipped, failed = execute(main, store)
    if not as_json:
        out.print(
            f"backfill {name}: {ticks} ticks, {started} runs started "
            f"({started - failed} completed, {failed} not), {skipped} had run already",
            highlight=False,
        )
    if failed:
        raise typer.Exit(1)
