"""``deerflow runs``: list, show, follow, cancel, retry runs and send transitions.

Every command opens the store read-mostly (no orchestrator, no worker), answers from the run
index, and acts only by appending history events, so it is safe next to running
``deerflow serve`` / ``deerflow worker`` processes. ``--json`` prints machine-readable output
on stdout; exit codes are those of :mod:`deerflow.cli._base`.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

import deerflow._codec as _codec
from deerflow.cli._base import (
    JsonOpt,
    RunIdArg,
    StoreOpt,
    WaitTimedOut,
    emit_json,
    err,
    execute,
    fail,
    name_values,
    open_engine,
    out,
    store_flag,
)
from deerflow.cli._live import STYLE, elapsed, run_view, short_when, when
from deerflow.cli._progress import RunProgress
from deerflow.cli._run import watch
from deerflow.cli._table import Column, fitted_table
from deerflow.core.state import waits_of
from deerflow.engine import Engine
from deerflow.errors import DeerflowError
from deerflow.runtime import RunResult
from deerflow.runtime.integration import attribute_value
from deerflow.statemachine import MACHINE_FOLD
from deerflow.web import operations as ops

#: Seconds an owner has to take up a transition request before a send says none is there.
_TAKEN_WITHIN = 5.0

FollowTimeoutOpt = Annotated[
    float | None,
    typer.Option(help="With --follow: stop following after N seconds (exit 124)."),
]


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
    parent: Annotated[
        str | None, typer.Option(help="Only sub-workflow runs this run started.")
    ] = None,
    attr: Annotated[
        list[str] | None,
        typer.Option(
            help="Only runs with this search attribute, NAME=VALUE (a JSON value: 42, true, "
            '"text"; else text). Repeatable.'
        ),
    ] = None,
    after: Annotated[
        str | None, typer.Option(help="The next page: runs listed after this run id.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List runs, newest first."""
    try:
        start = ops.parse_time(since) if since else None
        attributes = _attributes(attr or [])
    except ValueError as exc:
        raise fail(str(exc)) from None
    where = ops.RunFilter(
        workflow=workflow,
        status=status,
        trigger=trigger,
        limit=limit,
        since=start,
        parent=parent,
        attributes=attributes,
        after=after,
    )

    async def main() -> list[dict[str, Any]]:
        async with open_engine(store) as engine:
            return [
                {**ops.summary(s), "elapsed": elapsed(s.started_at, s.finished_at)}
                for s in await ops.list_runs(engine, where)
            ]

    rows = execute(main, store)
    if as_json:
        emit_json(rows)
        return
    if not rows:
        out.print("no runs")
        return
    cells = [
        [
            r["run_id"],
            r["workflow"],
            Text(r["status"], style=STYLE.get(r["status"], "")),
            r["trigger"],
            short_when(r["started_at"]),
            r["elapsed"],
            Text(_short_error(r), style="red"),
        ]
        for r in rows
    ]
    out.print(fitted_table(_RUN_COLUMNS, cells, out.width))


def _attributes(pairs: list[str]) -> dict[str, Any]:
    """``{"customer": "acme", "amount": 42}`` from ``customer=acme amount=42``."""

    def malformed(pair: str) -> ValueError:
        return ValueError(f"--attr takes NAME=VALUE, not {pair!r}")

    found: dict[str, Any] = {}
    for name, text, value in name_values(pairs, malformed):
        if not isinstance(value, str | int | float | bool):
            value = text
        try:
            attribute_value(name, value)
        except TypeError as exc:
            raise ValueError(str(exc)) from None
        found[name] = value
    return found


def _short_error(row: dict[str, Any]) -> str:
    """``price: KeyError: 'lines'`` for ``task 'price' failed: KeyError: 'lines'``."""
    error = str(row["error"] or "")
    said = f"task {row['failed_task']!r} failed: "
    return f"{row['failed_task']}: {error[len(said) :]}" if error.startswith(said) else error


# Cut first: the run id, to 12 characters (a prefix ``runs show`` accepts), then the error
# (``runs show`` has it whole), then names.
_RUN_COLUMNS = (
    Column("run", 13, shrink_rank=1),
    Column("workflow", 10, shrink_rank=3),
    Column("status", 9, shrink_rank=5),
    Column("trigger", 7, shrink_rank=4),
    Column("started", 8, shrink_rank=6),
    Column("time", 6, shrink_rank=6, justify="right"),
    Column("error", 12, shrink_rank=2),
)


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
    timeout: FollowTimeoutOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show one run: its tasks with attempts and errors (the last attempt's traceback of a
    failed task), links to parent and child runs."""

    async def main() -> tuple[dict[str, Any], bool]:
        async with open_engine(store) as engine:
            state = await ops.find_run(engine, run_id)
            if follow:
                await _follow(engine, state.run_id, quiet=as_json, timeout=timeout, store=store)
            return await _detail(engine, state.run_id, show_history or as_json), follow

    detail, followed = execute(main, store)
    if as_json:
        emit_json(detail)
    elif not followed:
        result = detail["result"]
        out.print(run_view(result, [r for ids in detail["child_runs"].values() for r in ids]))
        for task_id, wait in detail["waits"].items():
            until = "" if wait["deadline"] is None else f" until {when(wait['deadline'])}"
            out.print(f"{task_id} waits for {wait['for']}{until}", highlight=False)
        if detail["archived"]:
            out.print(f"archived: {detail['archived']}", highlight=False)
        if show_history:
            out.print(_history_table(detail["history"]))
    if followed:
        raise typer.Exit(0 if detail["result"].ok else 1)


async def _detail(engine: Engine, run_id: str, with_history: bool) -> dict[str, Any]:
    state = await ops.find_run(engine, run_id)
    events = await ops.history(engine, run_id) if with_history else []
    result = ops.result_of(engine, state)
    detail: dict[str, Any] = {
        "result": result,
        "child_runs": await ops.child_runs(engine, run_id),
        "retries": state.retries,
        "trigger": ops.trigger_label(state),
        "archived": await engine.index.archived(state.run_id),
        "waits": waits_of(state),  # what its waiting nodes wait for, until when
    }
    if with_history:
        detail["attempts"] = ops.attempts(events)
        detail["history"] = events
    return detail


async def _follow(
    engine: Engine, run_id: str, *, quiet: bool, timeout: float | None, store: str | None
) -> None:
    """Redraw the run's live view on stderr whenever its history changes, until it ends."""

    children = _flat(await ops.child_runs(engine, run_id))

    def show(result: RunResult) -> None:
        if not quiet:
            progress.show(run_view(result, children))

    with RunProgress(err) as progress:
        try:
            await watch(engine, run_id, show, timeout=timeout)
        except WaitTimedOut:
            raise WaitTimedOut(await _not_ended(engine, run_id, timeout or 0.0, store)) from None


async def _not_ended(engine: Engine, run_id: str, timeout: float, store: str | None) -> str:
    """The line for a followed run that did not end in time: does anything move it?"""
    owned = await engine.log.group_active(engine.topics.orchestrator_group)
    going = (
        f"no process works on it now: start `deerflow worker FILE.py{store_flag(store)}`"
        if owned is False
        else "it goes on"
    )
    return (
        f"run {run_id} did not end within {timeout:g}s; {going}; see it with "
        f"`deerflow runs show {run_id}{store_flag(store)}`"
    )


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
            return (await ops.request_cancel(engine, run_id, reason)).run_id

    rid = execute(main, store)
    if as_json:
        emit_json({"run_id": rid, "action": "cancel", "requested": True})
    else:
        out.print(f"cancel requested for {rid}")


def runs_signal(
    run_id: RunIdArg,
    name: Annotated[
        str, typer.Argument(help="The signal's name (what a wait_for_signal waits for).")
    ],
    data: Annotated[
        str | None, typer.Option(help="JSON sent with the signal: the waiting node's output.")
    ] = None,
    signal_id: Annotated[
        str | None, typer.Option("--id", help="The signal's id: sending it again delivers it once.")
    ] = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Send a signal to a running run; a node waiting for its name takes its data.

    A signal sent before its node is reached is kept for it. Exit 1 if the run is unknown or
    has ended, or the data is not JSON.
    """
    try:
        value = _codec.loads(data) if data is not None else None
    except ValueError as exc:
        raise fail(f"--data is not JSON: {exc}") from None

    async def main() -> tuple[str, str]:
        async with open_engine(store) as engine:
            return await ops.request_signal(engine, run_id, name, value, signal_id)

    rid, sid = execute(main, store)
    if as_json:
        emit_json({"run_id": rid, "action": "signal", "signal": name, "signal_id": sid})
    else:
        out.print(f"signal {name!r} sent to {rid} (id {sid})")


def runs_retry(
    run_id: RunIdArg,
    store: StoreOpt = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Then follow it live.")] = False,
    timeout: FollowTimeoutOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Retry a failed run from its failed tasks (completed tasks keep their outputs)."""

    async def main() -> tuple[str, int, Any]:
        async with open_engine(store) as engine:
            state = await ops.find_run(engine, run_id)
            number = await ops.request_retry(engine, state.run_id)
            if not as_json:  # said before following, which may end in a timeout
                out.print(f"retry {number} requested for {state.run_id}", highlight=False)
            result = None
            if follow:
                await engine.index.wait(state.run_id, lambda s: s.retries >= number, 30.0)
                await _follow(engine, state.run_id, quiet=as_json, timeout=timeout, store=store)
                result = ops.result_of(engine, await ops.find_run(engine, state.run_id))
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
    if result is not None:
        raise typer.Exit(0 if result.ok else 1)


def runs_send(
    run_id: RunIdArg,
    transition: Annotated[str, typer.Argument(help="The transition's name.")],
    payload: Annotated[
        str | None, typer.Option(help="JSON sent with the request (context.payload in handlers).")
    ] = None,
    store: StoreOpt = None,
    timeout: Annotated[
        float, typer.Option(help="Wait at most N seconds for the transition to apply (exit 124).")
    ] = 60.0,
    as_json: JsonOpt = False,
) -> None:
    """Send a transition to a state-machine instance and wait until it applies.

    Exit 2 if it is refused or fails, or if no process owns the instance (a ``deerflow worker``
    or ``deerflow serve`` of its workflow must run for a transition to apply).
    """
    try:
        data = _codec.loads(payload) if payload else None
    except ValueError as exc:
        raise fail(f"--payload is not JSON: {exc}") from None

    async def main() -> Any:
        async with open_engine(store) as engine:
            state = await ops.find_run(engine, run_id)
            rid = state.run_id
            start = (
                f"start `deerflow worker FILE.py{store_flag(store)}` or "
                f"`deerflow serve FILE.py{store_flag(store)}` (FILE.py defines {state.workflow})"
            )
            owned = await engine.log.group_active(engine.topics.orchestrator_group)
            if owned is False and not state.terminal:
                raise DeerflowError(
                    f"no process owns instance {rid} of {state.workflow}, so nothing would apply "
                    f"{transition!r}: {start}, then send again"
                )
            request = uuid.uuid4().hex[:16]
            await engine.send(rid, transition, payload=data, request_id=request, wait=False)

            def applied(s: Any) -> bool:
                return s.terminal or MACHINE_FOLD.answered(s, request)

            # An owner takes a request up within a second or so (applies it, or schedules its
            # handler). A broker may still list an owner that has gone (Tansu does until the
            # group changes): no taker in a few seconds means none is there.
            began = time.monotonic()
            window = min(timeout, _TAKEN_WITHIN)
            taken = await engine.index.wait(
                rid, lambda s: applied(s) or f"{transition}@{request}" in s.tasks, window
            )
            if taken is None and timeout > window:
                raise DeerflowError(
                    f"no process took up {transition!r} of instance {rid} of {state.workflow} "
                    f"within {window:g}s, so none owns it: {start}; the request stays queued "
                    "and applies then"
                )
            left = timeout - (time.monotonic() - began)
            done = await engine.index.wait(rid, applied, max(0.0, left))
            if done is None:
                raise WaitTimedOut(
                    f"transition {transition!r} of {rid} was not applied within {timeout:g}s; "
                    f"the request stays queued: see it with "
                    f"`deerflow runs show {rid}{store_flag(store)}`"
                )
            MACHINE_FOLD.answer(done, request, transition)  # raises when not applied
            return engine._result(done)

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
