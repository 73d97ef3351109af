"""``deerflow events tail`` and ``deerflow ui``, and where every operating command is
registered (``runs`` in :mod:`deerflow.cli._runs`, ``dlq`` in :mod:`deerflow.cli._dlq`)."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from deerflow.cli._base import AppOpt, JsonOpt, StoreOpt, execute, load_apps, open_engine, out
from deerflow.cli._dlq import dlq_app
from deerflow.cli._runs import (
    runs_cancel,
    runs_list,
    runs_retry,
    runs_send,
    runs_show,
    runs_signal,
)
from deerflow.cli._tail import tail_topic

events_app = typer.Typer(help="Read the event log.", no_args_is_help=True)


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

    execute(main, store, ctrl_c_ends=True)


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

    workflows = load_apps(app)
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
    from deerflow.logs import FORMAT_ENV, configure_logging, quiet_libraries

    if log_json or os.environ.get(FORMAT_ENV, "").lower() == "json":
        configure_logging(json_format=True)  # before serve/worker: their basicConfig then yields
    else:
        quiet_libraries()  # serve --log-level debug lets them through again


def register(app: typer.Typer, runs_app: typer.Typer) -> None:
    """Add these commands (and the global ``--log-json``) to the ``deerflow`` command line."""
    app.callback()(root_options)
    runs_app.command("list")(runs_list)
    runs_app.command("show")(runs_show)
    runs_app.command("cancel")(runs_cancel)
    runs_app.command("retry")(runs_retry)
    runs_app.command("send")(runs_send)
    runs_app.command("signal")(runs_signal)
    app.add_typer(events_app, name="events")
    app.add_typer(dlq_app, name="dlq")
    app.command("ui")(ui_command)
