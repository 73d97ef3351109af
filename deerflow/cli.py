"""The ``deerflow`` command line."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from deerflow import _codec
from deerflow._loader import load_module_workflows
from deerflow._progress import RunProgress
from deerflow.errors import DeerflowError
from deerflow.logs import configure_logging
from deerflow.runtime._engine import Engine, default_store
from deerflow.runtime._results import RunResult

app = typer.Typer(
    help="deerflow: durable, event-driven workflows.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
runs_app = typer.Typer(help="Inspect and control runs.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")

out = Console()
err = Console(stderr=True)
T = TypeVar("T")

StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store",
        help="Event-log URL "
        "(memory://, sqlite:///file.db, kafka://host:9092); default $DEERFLOW_STORE "
        "or sqlite:///deerflow.db",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


def _execute(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    try:
        return asyncio.run(main())
    except DeerflowError as exc:
        raise _fail(str(exc)) from None


def _parse_params(pairs: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise _fail(f"--param expects key=value, got {pair!r}")
        try:
            params[key] = _codec.loads(raw)
        except ValueError:
            params[key] = raw
    return params


def _print_result(result: RunResult, as_json: bool) -> None:
    if as_json:
        out.print_json(result.model_dump_json())
        return
    colour = "green" if result.ok else "red"
    out.print(f"[bold {colour}]{result.status}[/] run {result.run_id} of {result.workflow}")
    if result.error:
        out.print(f"[red]{result.error}[/]")
    out.print_json(_codec.dumps(result.output).decode())


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
    timeout: Annotated[float | None, typer.Option(help="Give up waiting after N seconds.")] = None,
    as_json: JsonOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No live progress.")] = False,
) -> None:
    """Run one workflow to completion with live progress; exit 0 only if it completed."""
    workflows, chosen = load_module_workflows(target)
    if chosen is None:
        names = ", ".join(wf.name for wf in workflows)
        raise _fail(f"{target} defines several workflows ({names}); use FILE.py:NAME")
    params = _parse_params(param or [])
    data = _codec.loads(input_json) if input_json else None

    async def main() -> RunResult:
        if getattr(chosen, "_pipeline", None) is not None:
            from deerflow.pipeline import run_pipeline  # a stream, not a run in the history

            return await run_pipeline(
                chosen, params=params, input=data, timeout=timeout, run_id=run_id
            )
        async with Engine(store, workflows) as engine:
            handle = await engine.start(chosen, params=params, input=data, run_id=run_id)
            if quiet or as_json:
                return await handle.result(timeout=timeout)
            return await _follow(engine, handle.run_id, timeout)

    result = _execute(main)
    _print_result(result, as_json)
    raise typer.Exit(0 if result.ok else 1)


async def _follow(engine: Engine, run_id: str, timeout: float | None) -> RunResult:
    """Show live progress of ``run_id`` until it ends."""
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    with RunProgress(err) as progress:
        while True:
            state = await engine.index.wait(run_id, lambda s: True, timeout=0.2)
            if state is not None:
                result = engine._result(state)
                progress.update(result)
                if result.done:
                    return result
            if deadline is not None and loop.time() > deadline:
                raise TimeoutError(f"run {run_id} did not finish within {timeout}s")
            await asyncio.sleep(0.1)


@app.command()
def worker(
    target: Annotated[str, typer.Argument(help="FILE.py defining the workflows")],
    store: StoreOpt = None,
    concurrency: Annotated[int, typer.Option(help="Task attempts run at once.")] = 16,
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
        async with Engine(store, workflows, concurrency=concurrency, eager=eager) as engine:
            err.print(f"worker on {engine.log.url}: {', '.join(w.name for w in workflows)}")
            await _until_signalled()

    _execute(main)


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()


# `deerflow runs list|show|cancel|retry` live in deerflow/_cli_ops.py (registered below).


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except DeerflowError as exc:
        err.print(f"[bold red]error:[/] {exc}")
        sys.exit(2)


__all__ = ["app", "default_store", "main"]


# -- `deerflow serve` and `deerflow triggers` (implemented in deerflow/serve.py) --------------
from deerflow.serve import serve_command, triggers_app  # noqa: E402 - registered after `app`

app.command("serve")(serve_command)
app.add_typer(triggers_app, name="triggers")

# -- `deerflow runs ...`, `events tail`, `dlq`, `ui` (implemented in deerflow/_cli_ops.py) -----
from deerflow._cli_ops import register as _register_ops  # noqa: E402 - registered after `app`

_register_ops(app, runs_app)
