"""The ``deerflow`` command line (exit codes: see :mod:`deerflow.cli._base`)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from typing import Annotated, Any

import typer

import deerflow._codec as _codec
from deerflow._startup import stop_on_signals
from deerflow._userfile import load_module_workflows
from deerflow.cli._base import (
    INTERRUPTED,
    TIMED_OUT,
    JsonOpt,
    StoreOpt,
    WaitTimedOut,
    err,
    execute,
    fail,
    leave,
    name_values,
    out,
    store_flag,
)
from deerflow.cli._run import follow_run, not_finished, print_outcome, stream_pipeline
from deerflow.errors import DeerflowError
from deerflow.logs import configure_logging
from deerflow.runtime import Engine, RunResult, default_store

app = typer.Typer(
    help="deerflow: durable, event-driven workflows.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
runs_app = typer.Typer(help="Inspect and control runs.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")


def _parse_params(pairs: list[str]) -> dict[str, Any]:
    def malformed(pair: str) -> typer.Exit:
        return fail(f"--param expects key=value, got {pair!r}")

    return {key: value for key, _, value in name_values(pairs, malformed)}


@app.command()
def run(
    target: Annotated[str, typer.Argument(help="FILE.py or FILE.py:workflow")],
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="key=value (value parsed as JSON when it is JSON)"),
    ] = None,
    input_json: Annotated[str | None, typer.Option("--input", help="Run input as JSON.")] = None,
    store: StoreOpt = None,
    run_id: Annotated[str | None, typer.Option("--run-id", help="Idempotent run id.")] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            help="Give up waiting after N seconds (exit 124; the run stays in the store)."
        ),
    ] = None,
    as_json: JsonOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No live progress.")] = False,
) -> None:
    """Run one workflow to completion with live progress; exit 0 only if it completed.

    A state-machine instance is followed until it reaches a final state: the view says its
    state and the transitions to send from another shell (``deerflow runs send``).
    """
    workflows, chosen = load_module_workflows(target)
    if chosen is None:
        names = ", ".join(wf.name for wf in workflows)
        raise fail(f"{target} defines several workflows ({names}); use FILE.py:NAME")
    params = _parse_params(param or [])
    try:
        data = _codec.loads(input_json) if input_json else None
    except ValueError as exc:
        raise fail(f"--input is not JSON: {exc}") from None

    async def main() -> RunResult:
        if chosen.is_pipeline():  # a stream, not a run in the history
            return await stream_pipeline(
                chosen, params, data, timeout=timeout, run_id=run_id, target=target
            )
        async with Engine(store, workflows) as engine:
            handle = await engine.start(chosen, params=params, input=data, run_id=run_id)
            _leave_on_interrupt(handle.run_id, store)
            try:
                if not (quiet or as_json):
                    return await follow_run(
                        engine,
                        handle.run_id,
                        chosen,
                        timeout=timeout,
                        store=store,
                        console=err,
                    )
                return await handle.result(timeout=timeout)
            except (WaitTimedOut, TimeoutError):
                leave(not_finished(handle.run_id, timeout or 0.0, target, store), TIMED_OUT)

    result = execute(main, store)
    if as_json:
        out.print_json(result.model_dump_json())
    else:
        print_outcome(result, store, out, history=not chosen.is_pipeline())
    raise typer.Exit(0 if result.ok else 1)


@app.command()
def worker(
    target: Annotated[str, typer.Argument(help="FILE.py defining the workflows")],
    store: StoreOpt = None,
    concurrency: Annotated[int, typer.Option(help="Task attempts run at once.")] = 16,
    prefetch: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Queued task attempts read ahead of free slots, the highest priority among "
            "them starting first (default: the concurrency, at least 16).",
        ),
    ] = None,
    eager: Annotated[
        bool,
        typer.Option(
            help="Run the next attempt of a run owned here at once, without the task queue."
        ),
    ] = True,
) -> None:
    """Run an orchestrator and a worker until SIGINT/SIGTERM (scale out on Kafka)."""
    workflows, _ = load_module_workflows(target)
    configure_logging()  # deerflow's lines; the libraries' (aiokafka) stay quiet

    async def main() -> None:
        async with Engine(
            store, workflows, concurrency=concurrency, prefetch=prefetch, eager=eager
        ) as engine:
            err.print(f"worker on {engine.log.url}: {', '.join(w.name for w in workflows)}")
            await _until_signalled()

    execute(main, store)


def _leave_on_interrupt(run_id: str, store: str | None) -> None:
    """Ctrl-C stops following at once and says where the run is."""
    message = (
        f"interrupted; run {run_id} stays in the store: see it with "
        f"`deerflow runs show {run_id}{store_flag(store)}`"
    )
    with contextlib.suppress(NotImplementedError):
        asyncio.get_running_loop().add_signal_handler(
            signal.SIGINT, lambda: leave(message, INTERRUPTED)
        )


async def _until_signalled() -> None:
    stop = asyncio.Event()
    stop_on_signals(stop)
    await stop.wait()


# `deerflow runs list|show|cancel|retry` live in deerflow/cli/_ops.py (registered below).


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except DeerflowError as exc:
        fail(str(exc))
        sys.exit(2)


__all__ = ["app", "default_store", "main"]


# -- `deerflow serve` and `deerflow triggers` (implemented in deerflow/serve.py) --------------
from deerflow.serve import serve_command, triggers_app  # noqa: E402 - registered after `app`

app.command("serve")(serve_command)
app.add_typer(triggers_app, name="triggers")

# -- `deerflow runs ...`, `events tail`, `dlq`, `ui` (implemented in deerflow/cli/_ops.py) -----
from deerflow.cli._ops import register as _register_ops  # noqa: E402 - registered after `app`

_register_ops(app, runs_app)

# -- `deerflow schedules ...` (implemented in deerflow/cli/_schedules.py) -----------------------
from deerflow.cli._schedules import schedules_app  # noqa: E402 - registered after `app`

app.add_typer(schedules_app, name="schedules")
