"""Schedules in the API (``/api/schedules``) and on the dashboard (``/ui/schedules``).

Listing, pausing and resuming answer at once. A backfill runs in this process in the
background (its runs waited for, at most ``max_parallel`` at once): the API answers 202 with
the ticks' run ids, the page shows the last backfill's outcome; one backfill of a schedule at
a time (409 for a second).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from html import escape
from typing import Any
from urllib.parse import quote

from aiohttp import web

from deerflow.connectors.schedule import (
    BACKFILL_PARALLEL,
    BackfillResult,
    ScheduleControl,
    ScheduleInfo,
)
from deerflow.errors import DeerflowError
from deerflow.web._context import WebContext, context

log = logging.getLogger("deerflow.web")

#: The most runs one backfill keeps running at once.
MAX_PARALLEL = 100


class BackfillRunning(DeerflowError):
    """A backfill of this schedule is running in this process already."""


def _moment(value: Any, name: str) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"{name!r} must be an ISO-8601 time string")
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{name!r} is not an ISO-8601 time: {value!r}") from None


def backfill_options(body: dict[str, Any]) -> tuple[datetime, datetime, int]:
    """``from``, ``to`` and ``max_parallel`` of a backfill request; ``ValueError`` naming
    what is wrong."""
    if "from" not in body or "to" not in body:
        raise ValueError("a backfill needs 'from' and 'to' (ISO-8601 times)")
    parallel = body.get("max_parallel", BACKFILL_PARALLEL)
    # JSON does not tell 29 from 29.0 (JSON Schema's "integer" accepts both): take either.
    if isinstance(parallel, float) and parallel.is_integer():
        parallel = int(parallel)
    if isinstance(parallel, bool) or not isinstance(parallel, int):
        raise ValueError("'max_parallel' must be a whole number")
    if not 1 <= parallel <= MAX_PARALLEL:
        raise ValueError(f"'max_parallel' must be from 1 to {MAX_PARALLEL}")
    return _moment(body["from"], "from"), _moment(body["to"], "to"), parallel


def start_backfill(
    ctx: WebContext, name: str, first: datetime, last: datetime, max_parallel: int
) -> list[str]:
    """Start backfilling ``name`` in the background; the run ids of its ticks.

    Raises:
        BackfillRunning: one runs already.
        DeerflowError: an unknown schedule, a reversed or too wide a range.
    """
    control = ScheduleControl(ctx.engine)
    planned = control.plan(name, first, last)
    running = ctx.backfills.get(name)
    if running is not None and not running.done():
        raise BackfillRunning(f"a backfill of {name!r} is running; wait for it to end")

    async def backfill() -> None:
        try:
            result = await control.backfill(name, first, last, max_parallel=max_parallel)
            ctx.backfilled[name] = result
        except DeerflowError as exc:
            ctx.backfilled[name] = str(exc)
        except Exception as exc:  # kept for the page; the server goes on
            log.exception("backfill of %s failed", name)
            ctx.backfilled[name] = f"failed: {exc!r}"

    ctx.backfills[name] = asyncio.get_running_loop().create_task(
        backfill(), name=f"deerflow-backfill-{name}"
    )
    return [run_id for _, run_id in planned]


async def stop_backfills(ctx: WebContext) -> None:
    """Cancel the backfills running here (their runs already requested go on)."""
    tasks = [t for t in ctx.backfills.values() if not t.done()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# -- the dashboard page -----------------------------------------------------------------------


def _outcome(value: Any) -> str:
    if isinstance(value, BackfillResult):
        done = value.ticks and len(value.started) - value.failed
        return escape(
            f"last backfill: {value.ticks} ticks, {len(value.started)} runs "
            f"({done} completed, {value.failed} not), {len(value.skipped)} had run"
        )
    return escape(f"last backfill: {value}") if value else ""


def _row(info: ScheduleInfo, ctx: WebContext) -> str:
    p, name = ctx.ui_prefix, quote(info.name, safe="")
    toggle = (
        f'<form method="post" action="{p}/schedules/{name}/resume" class="inline">'
        '<button type="submit">Resume</button></form>'
        if info.paused
        else f'<form method="post" action="{p}/schedules/{name}/pause" class="inline">'
        '<button type="submit">Pause</button></form>'
    )
    running = ctx.backfills.get(info.name)
    busy = running is not None and not running.done()
    backfill = (
        "<span class=muted>backfilling…</span>"
        if busy
        else f'<form method="post" action="{p}/schedules/{name}/backfill" class="inline '
        'backfill"><input name="from" placeholder="from (ISO time)" size="16" required>'
        '<input name="to" placeholder="to (ISO time)" size="16" required>'
        f'<input name="max_parallel" type="number" min="1" max="{MAX_PARALLEL}" '
        f'value="{BACKFILL_PARALLEL}" size="3"><button type="submit">Backfill</button></form>'
    )
    state = "paused" if info.paused else "active"
    return (
        f'<tr data-schedule="{escape(info.name)}"><td>{escape(info.name)}</td>'
        f"<td>{escape(info.workflow)}</td><td><code>{escape(info.when)}</code></td>"
        f'<td><span class="badge st-{"cancelled" if info.paused else "running"}">{state}</span>'
        f"</td><td>{escape(info.last_tick or '')}</td><td>{escape(info.next_tick or '')}</td>"
        f"<td>{toggle}</td><td>{backfill}<div class=muted>"
        f"{_outcome(ctx.backfilled.get(info.name))}</div></td></tr>"
    )


async def schedules_body(request: web.Request) -> str:
    """The schedules page's content."""
    ctx = context(request)
    infos = await ScheduleControl(ctx.engine).list_schedules()
    return (
        "<h1>Schedules</h1><p class='muted'>One run per tick, whichever process fires it. "
        "A paused schedule skips its ticks until resumed; a backfill runs past ticks "
        "(those that ran already are skipped).</p>"
        '<table class="grid schedules"><thead><tr><th>schedule</th><th>workflow</th>'
        "<th>when</th><th>state</th><th>last tick</th><th>next tick</th><th></th><th></th>"
        "</tr></thead><tbody>"
        + "".join(_row(i, ctx) for i in infos)
        + "</tbody></table>"
        + ("" if infos else "<p class=empty>No schedules loaded.</p>")
    )
