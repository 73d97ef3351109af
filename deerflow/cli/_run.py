"""``deerflow run``: follow one run live, then say how it ended or why the wait stopped.

A state-machine instance waits for transitions sent from elsewhere: while it waits, the view
says which state it is in, which transitions it allows and the command that sends one; this
process owns the instance meanwhile, so those sends apply, and it ends with the instance.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.markup import escape

import deerflow._codec as _codec
from deerflow.cli._base import TIMED_OUT, WaitTimedOut, leave, store_flag
from deerflow.cli._progress import RunProgress
from deerflow.engine import Engine, Workflow
from deerflow.runtime import RunResult
from deerflow.web.operations import result_of


def machine_lines(
    result: RunResult, workflow: Workflow, store: str | None, *, first: bool
) -> list[str]:
    """Where an instance waits, what moves it and (``first`` time) how to send a transition."""
    machine = workflow.machine
    if machine is None or result.state is None or result.done:
        return []
    allowed = machine.allowed(result.state)
    lines = [
        f"instance {result.run_id} waits in state {result.state!r}; "
        f"allowed: {', '.join(allowed) or 'none'}"
    ]
    if allowed and first:
        lines.append(
            f"send one from another shell: deerflow runs send {result.run_id} "
            f"{allowed[0]}{store_flag(store)}"
        )
    return lines


async def watch(
    engine: Engine,
    run_id: str,
    on_change: Callable[[RunResult], None],
    *,
    timeout: float | None,
) -> RunResult:
    """Hand ``on_change`` the run each time its history is read, until it ends.

    Raises:
        WaitTimedOut: it did not end within ``timeout`` seconds.
    """
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    while True:
        state = await engine.index.wait(run_id, lambda s: True, timeout=0.2)
        if state is not None:
            result = result_of(engine, state)
            on_change(result)
            if result.done:
                return result
        if deadline is not None and loop.time() > deadline:
            raise WaitTimedOut(f"run {run_id} did not finish within {timeout:g}s")
        await asyncio.sleep(0.1)


async def follow_run(
    engine: Engine,
    run_id: str,
    workflow: Workflow,
    *,
    timeout: float | None,
    store: str | None,
    console: Console,
) -> RunResult:
    """Show ``run_id`` live until it ends; raises :class:`WaitTimedOut` after ``timeout``."""
    announced: str | None = None  # the instance state last said

    def show(result: RunResult) -> None:
        nonlocal announced
        if result.state != announced and not result.done:
            # Printed above the live table, so a pipe or a log keeps every state.
            for line in machine_lines(result, workflow, store, first=announced is None):
                progress.note(line)
            announced = result.state
        progress.update(result)

    with RunProgress(console) as progress:
        return await watch(engine, run_id, show, timeout=timeout)


def not_finished(run_id: str, timeout: float, target: str, store: str | None) -> str:
    """The line for a run that did not end within ``timeout``: where it is and what next."""
    file = target.partition(":")[0]
    return (
        f"run {run_id} did not finish within {timeout:g}s; it stays in the store: "
        f"see it with `deerflow runs show {run_id}{store_flag(store)}`, let it go on with "
        f"`deerflow worker {file}{store_flag(store)}`"
    )


#: seconds the items in flight when ``deerflow run --timeout`` stops a pipeline may still take
PIPELINE_DRAIN = 2.0


async def stream_pipeline(
    workflow: Workflow,
    params: dict[str, Any],
    data: Any,
    *,
    timeout: float | None,
    run_id: str | None,
    target: str,
) -> RunResult:
    """Stream ``workflow``'s pipeline to its end; one that is not done within ``timeout``
    stops (its items in flight get :data:`PIPELINE_DRAIN` seconds) and ends the process in
    one line: a stage's thread may run on, and nothing of a pipeline waits in a store."""
    result = await workflow.stream(
        params,
        input=data,
        timeout=timeout,
        run_id=run_id,
        drain_timeout=None if timeout is None else PIPELINE_DRAIN,
    )
    if timeout is not None and result.status == "cancelled":
        leave(pipeline_not_finished(result, timeout, target), TIMED_OUT)
    return result


def pipeline_not_finished(result: RunResult, timeout: float, target: str) -> str:
    """The line for a pipeline stopped at ``timeout``: how far it got and what next."""
    output = result.output if isinstance(result.output, dict) else {}
    items = output.get("items") or {}
    completed = int(items.get("completed", 0))
    return (
        f"pipeline {result.workflow} did not finish within {timeout:g}s: {completed} "
        f"item{'' if completed == 1 else 's'} completed, {items.get('in_flight', 0)} abandoned "
        f"in flight; a pipeline keeps no history: run {target} again with a longer --timeout"
    )


def print_outcome(
    result: RunResult, store: str | None, console: Console, *, history: bool = True
) -> None:
    """The run's status line; its output when it completed, the failure and (``history``:
    the run has one, a pipeline's has not) where to look when not."""
    colour = "green" if result.ok else "red"
    where = f" in state {result.state!r}" if result.state is not None else ""
    console.print(
        f"[bold {colour}]{result.status}[/] run {result.run_id} of {result.workflow}{where}",
        highlight=False,
        soft_wrap=True,
    )
    if result.ok:
        if result.output is not None:
            console.print_json(_codec.dumps(result.output).decode())
        return
    if result.error:
        console.print(f"[red]{escape(result.error)}[/]", highlight=False, soft_wrap=True)
    if not history:
        return
    console.print(
        f"see its attempts and traceback: deerflow runs show {result.run_id}{store_flag(store)}"
        " (--history: every event)",
        highlight=False,
        soft_wrap=True,
    )
