"""The dashboard's forms (cancel, retry, signal, transition, replay), dead letters and triggers.

Every action appends to the log and redirects back (303) with a message, so reloading the page
never repeats an action. Posts from another origin are refused (see :mod:`._auth`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from html import escape
from typing import Any
from urllib.parse import quote

from aiohttp import web

from deerflow.connectors.schedule import ScheduleControl
from deerflow.errors import DeerflowError, RunNotFound
from deerflow.web import _dlq, _runs, _schedules
from deerflow.web._auth import cross_site
from deerflow.web._context import WebContext, context
from deerflow.web._extend import probe_trigger, transition_handler
from deerflow.web._html import badge, button_form, json_block, link_run, page, when
from deerflow.web._pages import dashboard_page, html
from deerflow.web._waits import signal_form


def _back(location: str, *, flash: str = "", error: str = "") -> web.HTTPSeeOther:
    key, text = ("error", error) if error else ("flash", flash)
    return web.HTTPSeeOther(f"{location}?{key}={quote(text)}")


def _said(exc: DeerflowError, run_id: str) -> str:
    """What the page says of a refused action: of an unknown run, no store and no other ids."""
    return _runs.public_message(exc, run_id) if isinstance(exc, RunNotFound) else str(exc)


def _refuse_cross_site(request: web.Request) -> None:
    if cross_site(request):
        raise web.HTTPForbidden(text="cross-site form posts are refused")


def _run_form(request: web.Request) -> tuple[WebContext, str, str]:
    """The context, run id and page of a form posted on a run's page (refused when posted
    from another site)."""
    _refuse_cross_site(request)
    ctx, rid = context(request), request.match_info["run_id"]
    return ctx, rid, f"{ctx.ui_prefix}/runs/{quote(rid)}"


@contextlib.contextmanager
def _refused_back_to(where: str, rid: str) -> Iterator[None]:
    """Back to ``where`` saying why, when the action on run ``rid`` is refused."""
    try:
        yield
    except DeerflowError as exc:
        raise _back(where, error=_said(exc, rid)) from None


async def cancel_action(request: web.Request) -> web.StreamResponse:
    """``POST /ui/runs/{run_id}/cancel``."""
    ctx, rid, where = _run_form(request)
    with _refused_back_to(where, rid):
        await _runs.request_cancel(ctx.engine, rid, reason="cancelled from the dashboard")
    raise _back(where, flash="Cancel requested.")


async def retry_action(request: web.Request) -> web.StreamResponse:
    """``POST /ui/runs/{run_id}/retry``."""
    ctx, rid, where = _run_form(request)
    with _refused_back_to(where, rid):
        number = await _runs.request_retry(ctx.engine, rid, reason="retried from the dashboard")
    await ctx.engine.index.wait(rid, lambda s: s.retries >= number, 5.0)
    raise _back(where, flash=f"Retry {number} requested: the run goes on from its failed tasks.")


async def signal_action(request: web.Request) -> web.StreamResponse:
    """``POST /ui/runs/{run_id}/signal``: form fields ``name`` and ``data`` (JSON)."""
    ctx, rid, where = _run_form(request)
    form = await request.post()
    with _refused_back_to(where, rid):
        name, data = signal_form({k: str(v) for k, v in form.items()})
        await _runs.request_signal(ctx.engine, rid, name, data)
    raise _back(where, flash=f"Signal {name!r} sent.")


async def transition_action(request: web.Request) -> web.StreamResponse:
    """``POST /ui/runs/{run_id}/transition`` (state machines; an extension point)."""
    ctx, rid, where = _run_form(request)
    handler = transition_handler(ctx.engine)
    if handler is None:
        raise _back(where, error="no state-machine support is loaded in this process")
    form = await request.post()
    name = str(form.get("transition", "")).strip()
    with _refused_back_to(where, rid):
        await handler(ctx.engine, rid, name, {})
    raise _back(where, flash=f"Transition {name!r} sent.")


async def dlq_page(request: web.Request) -> web.StreamResponse:
    """``GET /ui/dlq``: dead letters, newest first, with a replay button each."""
    ctx = context(request)
    p = ctx.ui_prefix
    entries = await _dlq.dead_letters(ctx.engine)
    rows = "".join(
        f'<tr data-ref="{e.ref}"><td><code>{e.ref}</code></td><td>{when(e.timestamp_ms / 1000)}'
        f"</td><td>{escape(e.source)}</td><td>{escape(str(e.body.get('trigger') or ''))}</td>"
        f'<td class="error">{escape(e.reason)}</td><td>{json_block(e.body, 400)}</td><td>'
        + (
            f"replayed {when(e.replayed_at)}"
            if e.replayed_at
            else button_form(f"{p}/dlq/{e.ref}/replay", "Replay")
        )
        + "</td></tr>"
        for e in entries
    )
    body = (
        "<h1>Dead letters</h1><p class='muted'>Input that could not be processed. Replaying "
        "appends the carried message to its topic again.</p>"
        '<table class="grid dlq"><thead><tr><th>ref</th><th>time (UTC)</th><th>source</th>'
        "<th>trigger</th><th>reason</th><th>body</th><th></th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
        f"{'' if entries else '<p class=empty>No dead letters.</p>'}"
    )
    return dashboard_page(request, "Dead letters", body)


async def replay_action(request: web.Request) -> web.StreamResponse:
    """``POST /ui/dlq/{ref}/replay``."""
    _refuse_cross_site(request)
    ctx = context(request)
    where = f"{ctx.ui_prefix}/dlq"
    try:
        done = await _dlq.replay(ctx.engine, request.match_info["ref"])
    except DeerflowError as exc:
        raise _back(where, error=str(exc)) from None
    raise _back(where, flash=f"Replayed {request.match_info['ref']}: {done}.")


def _trigger_row(row: dict[str, Any], prefix: str) -> str:
    extra = {
        k: v
        for k, v in row.items()
        if k
        not in (
            "name",
            "workflow",
            "kind",
            "listens_to",
            "loaded",
            "runs",
            "last_run_id",
            "last_run_at",
            "last_event_at",
            "last_delay_s",
        )
    }
    last = link_run(prefix, row["last_run_id"]) if row.get("last_run_id") else ""
    delay = f"{row['last_delay_s']:.3f}s" if isinstance(row.get("last_delay_s"), float) else ""
    return (
        f'<tr data-trigger="{escape(row["name"])}"><td>{escape(row["name"])}</td>'
        f"<td>{escape(str(row.get('workflow') or ''))}</td>"
        f"<td>{escape(str(row.get('kind') or ''))}</td>"
        f"<td>{escape(str(row.get('listens_to') or ''))}</td><td>{row['runs']}</td>"
        f"<td>{when(row.get('last_event_at'))}</td><td>{delay}</td><td>{last}</td>"
        f"<td>{json_block(extra, 300) if extra else ''}</td></tr>"
    )


async def triggers_page(request: web.Request) -> web.StreamResponse:
    """``GET /ui/triggers``: each trigger's runs, last event and delay to its run."""
    ctx = context(request)
    rows = await _runs.trigger_status(ctx.engine)
    for row in rows:
        row.update(await probe_trigger(ctx.engine, row["name"]))
    body = (
        "<h1>Triggers</h1>"
        '<table class="grid triggers"><thead><tr><th>trigger</th><th>workflow</th>'
        "<th>kind</th><th>listens to</th><th>runs</th><th>last event (UTC)</th>"
        "<th>event → run</th><th>last run</th><th>more</th></tr></thead><tbody>"
        + "".join(_trigger_row(r, ctx.ui_prefix) for r in rows)
        + "</tbody></table>"
        + ("" if rows else "<p class=empty>No triggers loaded or seen.</p>")
        + f"<p class='muted'>Workflows loaded: "
        f"{escape(', '.join(sorted(w.name for w in ctx.engine.registry)) or 'none')} "
        f"{badge('running')} runs now: "
        f"{(await ctx.engine.index.counts()).get('running', 0)}</p>"
    )
    return html(page("Triggers", body, prefix=ctx.ui_prefix, live=True, sign_out=ctx.signed_in))


async def schedules_page(request: web.Request) -> web.StreamResponse:
    """``GET /ui/schedules``: each schedule's state and ticks, pause/resume and backfill."""
    return dashboard_page(request, "Schedules", await _schedules.schedules_body(request))


async def schedule_action(request: web.Request) -> web.StreamResponse:
    """``POST /ui/schedules/{name}/pause|resume|backfill``."""
    _refuse_cross_site(request)
    ctx, name = context(request), request.match_info["name"]
    where, action = f"{ctx.ui_prefix}/schedules", request.match_info["action"]
    control = ScheduleControl(ctx.engine)
    try:
        if action == "backfill":
            form = await request.post()
            options: dict[str, Any] = {k: str(v) for k, v in form.items() if str(v)}
            if "max_parallel" in options:
                options["max_parallel"] = int(options["max_parallel"])
            first, last, parallel = _schedules.backfill_options(options)
            run_ids = _schedules.start_backfill(ctx, name, first, last, parallel)
            raise _back(where, flash=f"Backfilling {name}: {len(run_ids)} ticks.")
        changed = await (control.pause(name) if action == "pause" else control.resume(name))
    except (DeerflowError, ValueError) as exc:
        raise _back(where, error=str(exc)) from None
    done = "paused" if action == "pause" else "resumed"
    raise _back(where, flash=f"{name} {done}." if changed else f"{name} was {done} already.")
