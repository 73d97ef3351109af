"""Operating deerflow from the shell: ``runs``, ``events tail``, ``dlq`` and ``ui``.

Every command opens the store read-mostly (no orchestrator, no worker), answers from the run
index or the log, and acts only by appending history events, so it is safe next to running
``deerflow serve`` / ``deerflow worker`` processes. ``--json`` prints machine-readable output
on stdout; errors go to stderr with exit code 2 (unknown run id, unreachable store, refused
action), and ``--follow`` exits 1 when the run does not complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from deerflow import _codec
from deerflow._cli_live import STYLE, elapsed, run_view, when
from deerflow._cli_tail import tail_topic
from deerflow.engine import Engine, Workflow
from deerflow.engine._engine import default_store
from deerflow.errors import DeerflowError, EventStoreError
from deerflow.eventstore import SqliteEventLog, open_log
from deerflow.web import _dlq, _runs

T = TypeVar("T")
out = Console()
err = Console(stderr=True)

events_app = typer.Typer(help="Read the event log.", no_args_is_help=True)
dlq_app = typer.Typer(help="Inspect and replay dead letters.", no_args_is_help=True)

StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store",
        help="Event-log URL (memory://, sqlite:///file.db, kafka://host:9092); default "
        "$DEERFLOW_STORE or sqlite:///deerflow.db",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
AppOpt = Annotated[
    str | None,
    typer.Option(
        "--app",
        help="FILE.py defining the workflows (draws dependencies, resolves triggers for replays).",
    ),
]
RunIdArg = Annotated[str, typer.Argument(help="Run id (or a unique prefix of one).")]


def emit_json(value: Any) -> None:
    """``value`` as one line of JSON on stdout."""
    sys.stdout.write(_codec.dumps(value).decode() + "\n")
    sys.stdout.flush()


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: message`` on stderr and return the exit to raise."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    return typer.Exit(code)


def execute(main: Callable[[], Awaitable[T]], store: str | None) -> T:
    """Run ``main``; turn deerflow errors into one helpful line and exit code 2."""
    try:
        return asyncio.run(main())  # type: ignore[arg-type]
    except EventStoreError as exc:
        raise fail(
            f"{exc} (store {store or default_store()}: pass --store URL or set DEERFLOW_STORE)"
        ) from None
    except DeerflowError as exc:
        raise fail(str(exc)) from None


@contextlib.asynccontextmanager
async def open_engine(store: str | None, app: str | None = None) -> AsyncIterator[Engine]:
    """An engine that only reads and appends: no orchestrator, no worker, no services."""
    url = store or default_store()
    log = open_log(url)
    if isinstance(log, SqliteEventLog) and not log.path.exists():
        # Reading a store that is not there would create an empty one and report no runs.
        raise DeerflowError(
            f"no store at {log.path} ({url}); pass --store URL or set DEERFLOW_STORE"
        )
    workflows: list[Workflow] = []
    if app:
        from deerflow._loader import load_module_workflows

        workflows, _ = load_module_workflows(app)
    async with Engine(log, workflows, orchestrate=False, work=False) as engine:
        yield engine


# -- runs ------------------------------------------------------------------------------------


def runs_list(
    store: StoreOpt = None,
    workflow: Annotated[str | None, typer.Option(help="Only this workflow.")] = None,
    status: Annotated[
        str | None,
        typer.Option(help="Only this status (running, completed, failed, cancelled, ...)."),
    ] = None,
    trigger: Annotated[
        str | None,
        typer.Option(
            help="Only runs started by this trigger (its name, or kafka / webhook / s3 / manual)."
        ),
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Started since (ISO-8601, or 15m / 2h / 1d ago).")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most N runs.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List runs, newest first."""
    try:
        start = _runs.parse_time(since) if since else None
    except ValueError as exc:
        raise fail(str(exc)) from None
    where = _runs.RunFilter(
        workflow=workflow, status=status, trigger=trigger, limit=limit, since=start
    )

    async def main() -> list[dict[str, Any]]:
        async with open_engine(store) as engine:
            return [
                {**_runs.summary(s), "elapsed": elapsed(s.started_at, s.finished_at)}
                for s in await _runs.list_runs(engine, where)
            ]

    rows = execute(main, store)
    if as_json:
        emit_json(rows)
        return
    table = Table(box=None, pad_edge=False)
    for column in ("run", "workflow", "status", "trigger", "started", "time", "error"):
        # Ids are what users copy: never cut them; let the other columns wrap.
        table.add_column(column, no_wrap=column in ("run", "status"), overflow="fold")
    for r in rows:
        table.add_row(
            r["run_id"],
            r["workflow"],
            f"[{STYLE.get(r['status'], '')}]{r['status']}",
            r["trigger"],
            when(r["started_at"]),
            r["elapsed"],
            r["error"] or "",
        )
    out.print(table if rows else "no runs")


def runs_show(
    run_id: RunIdArg,
    store: StoreOpt = None,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow", "-f", help="Live progress until the run ends; exit 0 only if it completed."
        ),
    ] = False,
    show_history: Annotated[
        bool, typer.Option("--history", help="Also the raw history events.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Show one run: its tasks with attempts and errors, links to parent and child runs."""

    async def main() -> tuple[dict[str, Any], bool]:
        async with open_engine(store) as engine:
            state = await _runs.find_run(engine, run_id)
            if follow:
                await _follow(engine, state.run_id, quiet=as_json)
            return await _detail(engine, state.run_id, show_history or as_json), follow

    detail, followed = execute(main, store)
    if as_json:
        emit_json(detail)
    elif not followed:
        result = detail["result"]
        out.print(run_view(result, [r for ids in detail["child_runs"].values() for r in ids]))
        if show_history:
            out.print(_history_table(detail["history"]))
    if followed:
        raise typer.Exit(0 if detail["result"].ok else 1)


async def _detail(engine: Engine, run_id: str, with_history: bool) -> dict[str, Any]:
    state = engine.index.runs[run_id]
    events = await _runs.history(engine, run_id) if with_history else []
    result = _runs.result_of(engine, state)
    detail: dict[str, Any] = {
        "result": result,
        "child_runs": _runs.child_runs(engine, run_id),
        "retries": state.retries,
        "trigger": _runs.trigger_label(state),
    }
    if with_history:
        detail["attempts"] = _runs.attempts(events)
        detail["history"] = events
    return detail


async def _follow(engine: Engine, run_id: str, *, quiet: bool) -> None:
    """Redraw the run's live view on stderr whenever its history changes, until it ends."""
    with Live(console=err, refresh_per_second=8, transient=False) as live:
        while True:
            state = await engine.index.wait(run_id, lambda s: True, timeout=0.25)
            if state is not None:
                result = _runs.result_of(engine, state)
                if not quiet:
                    live.update(run_view(result, _flat(_runs.child_runs(engine, run_id))))
                if result.done:
                    return
            await asyncio.sleep(0.2)


def _flat(children: dict[str, list[str]]) -> list[str]:
    return [rid for ids in children.values() for rid in ids]


def _history_table(events: list[dict[str, Any]]) -> Table:
    table = Table(title="history", box=None)
    for column in ("offset", "time", "type", "task", "attempt", "detail"):
        table.add_column(column, overflow="fold")
    for e in events:
        detail = e.get("error") or e.get("reason") or ""
        table.add_row(
            str(e.get("offset")),
            when(e.get("ts")),
            str(e.get("type")),
            str(e.get("task_id") or ""),
            str(e.get("attempt") or ""),
            str(detail),
        )
    return table


def runs_cancel(
    run_id: RunIdArg,
    store: StoreOpt = None,
    reason: Annotated[str, typer.Option(help="Recorded in the history.")] = "cancelled",
    as_json: JsonOpt = False,
) -> None:
    """Cancel a running run: pending tasks are skipped, the run ends cancelled."""

    async def main() -> str:
        async with open_engine(store) as engine:
            return (await _runs.request_cancel(engine, run_id, reason)).run_id

    rid = execute(main, store)
    if as_json:
        emit_json({"run_id": rid, "action": "cancel", "requested": True})
    else:
        out.print(f"cancel requested for {rid}")


def runs_retry(
    run_id: RunIdArg,
    store: StoreOpt = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Then follow it live.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Retry a failed run from its failed tasks (completed tasks keep their outputs)."""

    async def main() -> tuple[str, int, Any]:
        async with open_engine(store) as engine:
            state = await _runs.find_run(engine, run_id)
            number = await _runs.request_retry(engine, state.run_id)
            result = None
            if follow:
                await engine.index.wait(state.run_id, lambda s: s.retries >= number, 30.0)
                await _follow(engine, state.run_id, quiet=as_json)
                result = _runs.result_of(engine, engine.index.runs[state.run_id])
            return state.run_id, number, result

    rid, number, result = execute(main, store)
    if as_json:
        emit_json(
            {
                "run_id": rid,
                "action": "retry",
                "retry": number,
                "status": result.status if result else "running",
            }
        )
    else:
        out.print(f"retry {number} requested for {rid}")
    if result is not None:
        raise typer.Exit(0 if result.ok else 1)


def runs_send(
    run_id: RunIdArg,
    transition: Annotated[str, typer.Argument(help="The transition's name.")],
    payload: Annotated[
        str | None, typer.Option(help="JSON sent with the request (context.payload in handlers).")
    ] = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Send a transition to a state-machine instance; exit 2 if it is refused or fails."""
    data = _codec.loads(payload) if payload else None

    async def main() -> Any:
        async with open_engine(store) as engine:
            state = await _runs.find_run(engine, run_id)
            return await engine.send(state.run_id, transition, payload=data)

    result = execute(main, store)
    if as_json:
        emit_json(
            {
                "run_id": result.run_id,
                "transition": transition,
                "state": result.state,
                "status": result.status,
            }
        )
    else:
        out.print(f"{result.run_id}: {transition} -> {result.state}")


# -- events, dead letters, dashboard ---------------------------------------------------------


@events_app.command("tail")
def events_tail(
    store: StoreOpt = None,
    topic: Annotated[
        str, typer.Option(help="history, events, tasks or dlq (or a full topic name).")
    ] = "history",
    run: Annotated[
        str | None, typer.Option(help="Only records of this run id (history) or key.")
    ] = None,
    lines: Annotated[
        int, typer.Option("--lines", "-n", help="Show the last N records first.")
    ] = 20,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new records until Ctrl-C.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Print the last records of a deerflow topic, and follow it with -f."""

    async def main() -> None:
        async with open_engine(store) as engine:
            name = (
                getattr(engine.topics, topic, None)
                if topic in ("history", "events", "tasks", "dlq")
                else topic
            )
            await tail_topic(
                engine.log,
                str(name),
                key=run,
                lines=lines,
                follow=follow,
                as_json=as_json,
                console=out,
            )

    with contextlib.suppress(KeyboardInterrupt):
        execute(main, store)


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


def ui_command(
    store: StoreOpt = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: any free one).")] = 8080,
    app: AppOpt = None,
    config: Annotated[
        str | None,
        typer.Option(
            help="Configuration file with [gateway] "
            "api_keys; default $DEERFLOW_CONFIG or ./deerflow.toml"
        ),
    ] = None,
) -> None:
    """Serve the dashboard, the JSON API and /metrics for a store, without running workflows."""
    from deerflow.web import serve_ui

    workflows: list[Workflow] = []
    if app:
        from deerflow._loader import load_module_workflows

        if not Path(app).is_file():
            raise fail(f"no such file: {app}")
        workflows, _ = load_module_workflows(app)
    execute(lambda: serve_ui(store, workflows, host=host, port=port, config=config), store)


def root_options(
    log_json: Annotated[
        bool,
        typer.Option(
            "--log-json",
            help="Log JSON lines carrying run and task ids (also DEERFLOW_LOG_FORMAT=json).",
        ),
    ] = False,
) -> None:
    """deerflow: durable, event-driven workflows."""
    from deerflow.logs import FORMAT_ENV, configure_logging

    if log_json or os.environ.get(FORMAT_ENV, "").lower() == "json":
        configure_logging(json_format=True)  # before serve/worker: their basicConfig then yields


def register(app: typer.Typer, runs_app: typer.Typer) -> None:
    """Add these commands (and the global ``--log-json``) to the ``deerflow`` command line."""
    app.callback()(root_options)
    runs_app.command("list")(runs_list)
    runs_app.command("show")(runs_show)
    runs_app.command("cancel")(runs_cancel)
    runs_app.command("retry")(runs_retry)
    runs_app.command("send")(runs_send)
    app.add_typer(events_app, name="events")
    app.add_typer(dlq_app, name="dlq")
    app.command("ui")(ui_command)
