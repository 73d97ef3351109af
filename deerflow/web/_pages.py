"""The dashboard's run pages: the filterable runs list and one run's page."""

from __future__ import annotations

from html import escape
from typing import Any
from urllib.parse import quote

from aiohttp import web

from deerflow.core.expand import node_of
from deerflow.core.state import status_of
from deerflow.errors import RunNotFound
from deerflow.runtime import TaskResult
from deerflow.web import _runs
from deerflow.web._context import context
from deerflow.web._extend import run_panels, transition_handler
from deerflow.web._graph import svg
from deerflow.web._html import (
    badge,
    button_form,
    duration,
    json_block,
    link_run,
    page,
    select,
    when,
)

STATUSES = [
    "running",
    "queued",
    "completed",
    "failed",
    "cancelled",
    "dropped",
    "compensated",
    "compensation_failed",
]
SINCE = ["15m", "1h", "24h", "7d"]
CHILD_ROWS = 200  # rows of one expanded node's children on the page; the graph shows them all


def html(text: str, status: int = 200) -> web.Response:
    """An HTML response."""
    return web.Response(text=text, status=status, content_type="text/html")


def flash_of(request: web.Request) -> dict[str, str]:
    """The message an action left for the page it redirected to."""
    return {"flash": request.query.get("flash", ""), "error": request.query.get("error", "")}


def dashboard_page(
    request: web.Request, title: str, body: str, *, live: bool = False, error: str | None = None
) -> web.Response:
    """The dashboard page ``title`` answering ``request``: under its prefix, with the sign-out
    button when signed in and the message an action left for it (``error``: a problem of the
    page's own, shown instead of an action's)."""
    ctx = context(request)
    messages = flash_of(request)
    return html(
        page(
            title,
            body,
            prefix=ctx.ui_prefix,
            live=live,
            flash=messages["flash"],
            error=messages["error"] if error is None else error,
            sign_out=ctx.signed_in,
        )
    )


def _filter(request: web.Request) -> tuple[_runs.RunFilter, str]:
    q = request.query
    problem = ""
    try:
        since = _runs.parse_time(q["since"]) if q.get("since") else None
        until = _runs.parse_time(q["until"]) if q.get("until") else None
    except ValueError as exc:
        since = until = None
        problem = str(exc)
    limit = int(q["limit"]) if q.get("limit", "").isdigit() else 100
    return _runs.RunFilter(
        workflow=q.get("workflow") or None,
        status=q.get("status") or None,
        trigger=q.get("trigger") or None,
        since=since,
        until=until,
        limit=limit,
    ), problem


def _filter_form(request: web.Request, workflows: list[str], triggers: list[str]) -> str:
    q = request.query
    since = q.get("since", "")
    return (
        '<form class="filters" method="get" id="run-filters">'
        f"<label>workflow {select('workflow', workflows, q.get('workflow'))}</label>"
        f"<label>status {select('status', STATUSES, q.get('status'))}</label>"
        f"<label>trigger {select('trigger', triggers, q.get('trigger'))}</label>"
        f'<label>since <input name="since" list="since-list" value="{escape(since)}" '
        'placeholder="15m, 2h, ISO time" size="12"></label><datalist id="since-list">'
        + "".join(f'<option value="{s}">' for s in SINCE)
        + "</datalist>"
        f'<label>until <input name="until" value="{escape(q.get("until", ""))}" size="12" '
        'placeholder="ISO time"></label><button type="submit">Filter</button>'
        f'<a href="{context(request).ui_prefix}/">clear</a></form>'
    )


async def runs_page(request: web.Request) -> web.StreamResponse:
    """``GET /ui/``: runs, newest first, filtered by workflow, status, trigger and time."""
    ctx = context(request)
    where, problem = _filter(request)
    runs = await _runs.list_runs(ctx.engine, where)
    index = ctx.engine.index
    workflows = sorted(
        set(await index.distinct("workflow")) | {w.name for w in ctx.engine.registry}
    )
    triggers = sorted(
        set(await index.distinct("trigger_name")) | set(await index.distinct("trigger_kind"))
    )[:200]
    counts = await index.counts()
    chips = "".join(f'<span class="chip">{badge(k)} {v}</span>' for k, v in sorted(counts.items()))
    p = ctx.ui_prefix
    rows = "".join(
        f'<tr data-run-id="{escape(s.run_id)}" data-status="{escape(status_of(s))}">'
        f"<td>{link_run(p, s.run_id)}</td><td>{escape(s.workflow)}</td><td>{badge(status_of(s))}"
        f"</td><td>{escape(_runs.trigger_label(s))}</td><td>{when(s.started_at)}</td>"
        f"<td>{duration(s.started_at, s.finished_at)}</td>"
        f'<td class="error">{escape((s.error or "")[:160]) if s.status != "completed" else ""}'
        "</td></tr>"
        for s in runs
    )
    table = (
        f'<div data-live="runs"><p class="chips">{chips}</p><table class="grid runs">'
        "<thead><tr><th>run</th><th>workflow</th><th>status</th><th>trigger</th>"
        "<th>started (UTC)</th><th>time</th><th>error</th></tr></thead><tbody>"
        f"{rows}</tbody></table>"
        f"{'' if runs else '<p class=empty>No runs match.</p>'}</div>"
    )
    body = f"<h1>Runs</h1>{_filter_form(request, workflows, triggers)}{table}"
    return dashboard_page(request, "Runs", body, live=True, error=problem)


def _actions(detail: _runs.RunDetail, prefix: str, transitions: bool) -> str:
    rid = escape(detail.state.run_id)
    parts = []
    if not detail.state.terminal:
        parts.append(
            button_form(
                f"{prefix}/runs/{rid}/cancel",
                "Cancel run",
                css="danger",
                confirm="Cancel this run?",
            )
        )
    if detail.state.status == "failed":
        parts.append(
            button_form(f"{prefix}/runs/{rid}/retry", "Retry from failed task", css="primary")
        )
    if transitions and not detail.state.terminal:
        parts.append(
            f'<form method="post" action="{prefix}/runs/{rid}/transition" '
            'class="inline"><input name="transition" placeholder="transition" '
            'required size="14"><button type="submit">Send transition</button></form>'
        )
    return f'<div class="actions">{"".join(parts)}</div>' if parts else ""


def _facts(detail: _runs.RunDetail, prefix: str) -> str:
    s, r = detail.state, detail.result
    items: list[tuple[str, str]] = [
        ("workflow", f"{escape(r.workflow)} v{escape(r.version)}"),
        ("status", badge(r.status)),
        ("trigger", escape(_runs.trigger_label(s))),
        ("started", when(r.started_at)),
        ("finished", when(r.finished_at)),
        ("time", duration(r.started_at, r.finished_at)),
        ("events", str(r.events)),
    ]
    if s.retries:
        items.append(("retries", str(s.retries)))
    if r.parent_run_id:
        items.append(("parent run", link_run(prefix, r.parent_run_id)))
    if detail.archived:
        items.append(("archived", f"{badge('archived')} <code>{escape(detail.archived)}</code>"))
    if r.flow:
        items.append(("flow control", _flow_fact(r.flow)))
    if r.error:
        items.append(("error", f'<span class="error">{escape(r.error)}</span>'))
    return '<dl class="facts">' + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


def _flow_fact(flow: dict[str, Any]) -> str:
    """Where a run stands at its flow-control gate, as people read it."""
    key = f"<code>{escape(str(flow.get('key', '')))}</code>"
    status = flow.get("status")
    if status == "queued":
        return f"queued since {when(flow.get('queued_at'))}: waits for a slot of {key}"
    if status == "admitted" and flow.get("not_before"):
        return f"admitted; a rate limit of {key} starts it at {when(flow['not_before'])}"
    if status == "admitted":
        return f"admitted by {key} at {when(flow.get('admitted_at'))}"
    return f"{escape(str(status))} by {key}"


def _attempt_rows(rows: list[dict[str, Any]]) -> str:
    out = []
    for a in rows:
        trace = a.get("traceback")
        tb = (
            (
                f'<details><summary>traceback</summary><pre class="traceback">{escape(trace)}'
                "</pre></details>"
            )
            if trace
            else ""
        )
        error = (
            f"{escape(a.get('error_type') or '')}: {escape(a['error'])}" if a.get("error") else ""
        )
        fallback = " (fallback)" if a.get("fallback") else ""
        out.append(
            f'<tr class="attempt"><td>#{a["attempt"]}{fallback}</td>'
            f"<td>{badge(a.get('outcome', 'running'))}</td><td>"
            f"{when(a.get('started_at') or a.get('scheduled_at'))}</td>"
            f"<td>{duration(a.get('started_at'), a.get('finished_at'))}</td>"
            f"<td>{escape(str(a.get('worker') or ''))}</td>"
            f'<td class="error">{error}{tb}</td></tr>'
        )
    return "".join(out)


def _whole(detail: _runs.RunDetail) -> str:
    """Where the whole run is, as JSON: a value the page cuts short is there in full."""
    return f"/api/runs/{quote(detail.result.run_id, safe='')}"


def _task_row(detail: _runs.RunDetail, tid: str, task: TaskResult, prefix: str) -> str:
    child_runs = "".join(
        f"<div>↳ {link_run(prefix, rid, 'child run ' + rid)}</div>"
        for rid in detail.child_runs.get(tid, [])
    )
    value = json_block(task.output, 600, _whole(detail)) if task.status == "completed" else ""
    error = f'<div class="error">{escape(task.error)}</div>' if task.error else ""
    attempts = detail.attempts.get(tid, [])
    more = (
        f'<details><summary>{len(attempts)} attempt(s)</summary><table class="grid '
        f'attempts"><tbody>{_attempt_rows(attempts)}</tbody></table></details>'
        if attempts
        else ""
    )
    css = "child" if node_of(tid) else "top"
    return (
        f'<tr id="task-{escape(tid)}" class="{css}" data-task="{escape(tid)}" '
        f'data-status="{escape(task.status)}"><td>{escape(tid)}</td><td>{badge(task.status)}'
        f"</td><td>{task.attempts}</td><td>{when(task.started_at)}</td>"
        f"<td>{duration(task.started_at, task.finished_at)}</td>"
        f"<td>{value}{error}{child_runs}{more}</td></tr>"
    )


def _tasks_table(detail: _runs.RunDetail, prefix: str) -> str:
    tasks = detail.result.tasks
    children: dict[str, list[str]] = {}
    for tid in tasks:
        node = node_of(tid)
        if node is not None:
            children.setdefault(node, []).append(tid)
    rows: list[str] = []
    for tid, task in tasks.items():
        if node_of(tid) is None:
            rows.append(_task_row(detail, tid, task, prefix))
            # Children right under their node, as many as a page can take.
            rows.extend(
                _task_row(detail, c, tasks[c], prefix) for c in children.get(tid, [])[:CHILD_ROWS]
            )
    shown = {n: len(c) for n, c in children.items()}
    hidden = {n: c - CHILD_ROWS for n, c in shown.items() if c > CHILD_ROWS}
    note = "".join(
        f"<p class='muted'>{c} more children of {escape(n)} (see the graph and the API)</p>"
        for n, c in hidden.items()
    )
    return (
        '<table class="grid tasks"><thead><tr><th>task</th><th>status</th><th>attempts</th>'
        "<th>started (UTC)</th><th>time</th><th>output / error</th></tr></thead><tbody>"
        f"{''.join(rows)}</tbody></table>{note}"
    )


_SHOWN_APART = frozenset({"offset", "id", "run_id", "ts", "type", "v", "task_id", "attempt"})


def _fields(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k not in _SHOWN_APART and v not in (None, False)}


def _history_table(events: list[dict[str, Any]]) -> str:
    rows = "".join(
        f'<tr data-type="{escape(str(e.get("type")))}"><td>{e.get("offset")}</td>'
        f"<td>{when(e.get('ts'))}</td><td><code>{escape(str(e.get('type')))}</code></td>"
        f"<td>{escape(str(e.get('task_id') or ''))}</td><td>{e.get('attempt') or ''}</td>"
        f"<td>{json_block(_fields(e), 300)}</td></tr>"
        for e in events
    )
    return (
        '<table class="grid history"><thead><tr><th>offset</th><th>time (UTC)</th>'
        "<th>type</th><th>task</th><th>attempt</th><th>fields</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


async def run_page(request: web.Request) -> web.StreamResponse:
    """``GET /ui/runs/{run_id}``: the DAG, tasks, attempts, panels and raw history of a run."""
    ctx = context(request)
    p = ctx.ui_prefix
    try:
        detail = await _runs.run_detail(ctx.engine, request.match_info["run_id"])
    except RunNotFound as exc:
        return html(
            page(
                "Run not found",
                "<h1>Run not found</h1>"
                f"<p>{escape(_runs.public_message(exc, request.match_info['run_id']))}</p>",
                prefix=p,
                sign_out=ctx.signed_in,
            ),
            status=404,
        )
    r = detail.result
    whole = _whole(detail)
    note = (
        ""
        if detail.workflow is not None
        else '<p class="muted">Workflow not loaded here: dependencies are drawn from the shape '
        "the run recorded when it started "
        "(run <code>deerflow ui --app FILE</code> to see sub-workflow nodes as such).</p>"
        if detail.graph.dependencies_known
        else (
            '<p class="muted">Workflow not loaded here: tasks are placed by when they were '
            "scheduled and dependencies are not drawn "
            "(run <code>deerflow ui --app FILE</code>).</p>"
        )
    )
    panels = "".join(
        f'<section class="panel"><h2>{escape(t)}</h2>{h}</section>'
        for t, h in run_panels(ctx.engine, detail)
    )
    actions = _actions(detail, p, transition_handler(ctx.engine) is not None)
    body = (
        f'<h1>Run <code id="run-id">{escape(r.run_id)}</code></h1>'
        f'<div data-live="run">{_facts(detail, p)}{actions}'
        f'<section class="graph"><h2>Graph</h2>{note}<div class="scroll">'
        f"{svg(detail.graph, p)}</div></section>{panels}"
        f"<section><h2>Tasks</h2>{_tasks_table(detail, p)}</section>"
        f'<section class="io"><h2>Input</h2><h3>params</h3>{json_block(r.params, whole=whole)}'
        f"<h3>input</h3>{json_block(r.input, whole=whole)}"
        f"<h3>trigger</h3>{json_block(r.trigger, whole=whole)}"
        f"<h2>Output</h2>{json_block(r.output, whole=whole)}</section>"
        f"<section><details open><summary><h2>History ({len(detail.events)} events)</h2>"
        f"</summary>{_history_table(detail.events)}</details></section></div>"
    )
    return dashboard_page(request, f"Run {r.run_id}", body, live=not detail.state.terminal)
