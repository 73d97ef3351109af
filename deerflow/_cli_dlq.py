"""``deerflow dlq``: read dead letters (a list that fits the terminal, one letter in full)
and replay them."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from deerflow._cli_base import AppOpt, JsonOpt, StoreOpt, emit_json, execute, open_engine, out
from deerflow._cli_live import when
from deerflow.web import _dlq

dlq_app = typer.Typer(help="Inspect and replay dead letters.", no_args_is_help=True)


@dlq_app.command("list")
def dlq_list(
    store: StoreOpt = None,
    limit: Annotated[int, typer.Option(help="At most N.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """List dead letters, newest first (PARTITION:OFFSET names one for replay)."""

    async def main() -> list[_dlq.DeadLetterEntry]:
        async with open_engine(store) as engine:
            return await _dlq.dead_letters(engine, limit=limit)

    entries = execute(main, store)
    if as_json:
        emit_json([e.as_json() for e in entries])
        return
    table = Table(box=None)
    for column in ("ref", "time", "source", "trigger", "reason", "replayed"):
        table.add_column(column, overflow="fold")
    for e in entries:
        table.add_row(
            e.ref,
            when(e.timestamp_ms / 1000),
            e.source,
            str(e.body.get("trigger") or ""),
            e.reason,
            when(e.replayed_at),
        )
    out.print(table if entries else "no dead letters")


@dlq_app.command("replay")
def dlq_replay(
    refs: Annotated[list[str], typer.Argument(help="Dead letters as PARTITION:OFFSET.")],
    store: StoreOpt = None,
    app: AppOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Replay dead letters: the message again to its topic, an event again to its handler."""

    async def main() -> list[dict[str, str]]:
        async with open_engine(store, app) as engine:
            return [{"ref": ref, "done": await _dlq.replay(engine, ref)} for ref in refs]

    done = execute(main, store)
    if as_json:
        emit_json(done)
    for item in [] if as_json else done:
        out.print(f"{item['ref']}: {item['done']}")
