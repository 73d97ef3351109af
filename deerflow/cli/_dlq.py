"""``deerflow dlq``: read dead letters (a list that fits the terminal, one letter in full)
and replay them."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import RenderableType
from rich.text import Text

from deerflow.cli._base import AppOpt, JsonOpt, StoreOpt, emit_json, execute, open_engine, out
from deerflow.cli._letters import letter_text, origin
from deerflow.cli._live import short_when
from deerflow.cli._table import Column, fitted_table
from deerflow.web import operations as ops

dlq_app = typer.Typer(help="Inspect and replay dead letters.", no_args_is_help=True)


@dlq_app.command("list")
def dlq_list(
    store: StoreOpt = None,
    limit: Annotated[int, typer.Option(help="At most N.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """List dead letters, newest first (PARTITION:OFFSET names one for replay)."""

    async def main() -> list[ops.DeadLetterEntry]:
        async with open_engine(store) as engine:
            return await ops.dead_letters(engine, limit=limit)

    entries = execute(main, store)
    if as_json:
        emit_json([e.as_json() for e in entries])
        return
    if not entries:
        out.print("no dead letters")
        return
    rows: list[list[RenderableType]] = [
        [
            e.ref,
            short_when(e.timestamp_ms / 1000),
            origin(e),
            str(e.body.get("trigger") or ""),
            Text(e.reason, style="red"),
            short_when(e.replayed_at),
        ]
        for e in entries
    ]
    out.print(fitted_table(_LETTER_COLUMNS, rows, out.width))
    out.print(f"one in full: deerflow dlq show {entries[0].ref}", highlight=False)


# Cut first the trigger's name, then the source, then the reason (``dlq show`` has them whole).
_LETTER_COLUMNS = (
    Column("ref", 5, shrink_rank=9),
    Column("time", 8, shrink_rank=9),
    Column("source", 16, shrink_rank=2),
    Column("trigger", 8, shrink_rank=1),
    Column("reason", 20, shrink_rank=3),
    Column("replayed", 8, shrink_rank=9),
)


@dlq_app.command("show")
def dlq_show(
    ref: Annotated[str, typer.Argument(help="The dead letter, as PARTITION:OFFSET.")],
    store: StoreOpt = None,
    lines: Annotated[
        int, typer.Option("--lines", "-n", help="Show at most N lines of the payload.")
    ] = 40,
    as_json: JsonOpt = False,
) -> None:
    """Show one dead letter: where it came from, why, its payload and how to replay it."""

    async def main() -> ops.DeadLetterEntry:
        async with open_engine(store) as engine:
            entry = await ops.find_letter(engine, ref)
            replayed = {e.ref: e.replayed_at for e in await ops.dead_letters(engine)}
            entry.replayed_at = replayed.get(entry.ref)
            return entry

    entry = execute(main, store)
    if as_json:
        emit_json(entry.as_json())
        return
    for line in letter_text(entry, store, max_lines=lines):
        out.print(line, highlight=False, markup=False, soft_wrap=True)


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
            return [{"ref": ref, "done": await ops.replay(engine, ref)} for ref in refs]

    done = execute(main, store)
    if as_json:
        emit_json(done)
    for item in [] if as_json else done:
        out.print(f"{item['ref']}: {item['done']}")
