"""Small HTML building blocks of the dashboard: the page shell, badges, times, JSON blocks.

Pages are plain server-rendered HTML; every value from a run (ids, outputs, errors) goes
through :func:`html.escape`. Regions marked ``data-live`` are refreshed in place by the
bundled ``dashboard.js`` while ``data-live-while`` says the page is still changing.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import urlencode

from deerflow.web._runs import truncate

NAV = (
    ("Runs", "/"),
    ("Dead letters", "/dlq"),
    ("Triggers", "/triggers"),
    ("Schedules", "/schedules"),
)


def page(
    title: str,
    body: str,
    *,
    prefix: str,
    live: bool = False,
    flash: str = "",
    error: str = "",
    sign_out: bool = False,
) -> str:
    """A whole dashboard page; ``live`` keeps refreshing its ``data-live`` regions.

    ``sign_out`` adds the sign-out button (when the dashboard needs an API key).
    """
    links = "".join(f'<a href="{prefix}{href}">{name}</a>' for name, href in NAV)
    links += '<a href="/api/openapi.json">API</a><a href="/metrics">Metrics</a>'
    if sign_out:
        links += button_form(f"{prefix}/logout", "Sign out", css="signout")
    notes = ""
    if flash:
        notes += f'<p class="flash" role="status">{escape(flash)}</p>'
    if error:
        notes += f'<p class="flash error" role="alert">{escape(error)}</p>'
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)} · deerflow</title>"
        f'<link rel="stylesheet" href="{prefix}/static/dashboard.css">'
        f'<script defer src="{prefix}/static/dashboard.js"></script></head>'
        f'<body data-live-while="{"yes" if live else ""}"><header><a class="brand" '
        f'href="{prefix}/">deerflow</a><nav>{links}</nav></header>'
        f"<main>{notes}{body}</main></body></html>"
    )


def badge(status: str) -> str:
    """A status coloured like the graph's boxes."""
    return f'<span class="badge st-{escape(status)}">{escape(status)}</span>'


def when(ts: float | None) -> str:
    """A ``<time>`` element (UTC) for epoch seconds, or a dash."""
    if ts is None:
        return "&ndash;"
    moment = datetime.fromtimestamp(ts, UTC)
    return f'<time datetime="{moment.isoformat()}">{moment.strftime("%Y-%m-%d %H:%M:%S")}</time>'


def duration(started: float | None, finished: float | None) -> str:
    """How long something took (or has taken so far)."""
    if started is None:
        return "&ndash;"
    seconds = max(0.0, (finished or time.time()) - started)
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def json_block(value: Any, limit: int = 2000, whole: str | None = None) -> str:
    """A value as truncated JSON in a ``<pre>``; when it is cut short and ``whole`` is given,
    a link to the whole value there (a large output, kept in a blob store)."""
    shown = truncate(value, limit)
    link = (
        f'<a class="whole" href="{escape(whole)}">the whole value (JSON)</a>'
        if whole is not None and len(shown) > limit
        else ""
    )
    return f'<pre class="json">{escape(shown)}</pre>{link}'


def link_run(prefix: str, run_id: str, text: str | None = None) -> str:
    """A link to a run's page."""
    return f'<a href="{prefix}/runs/{escape(run_id)}">{escape(text or run_id)}</a>'


def query(**params: Any) -> str:
    """``?a=b`` for the non-empty parameters."""
    kept = {k: v for k, v in params.items() if v not in (None, "")}
    return "?" + urlencode(kept) if kept else ""


def select(name: str, options: list[str], chosen: str | None, blank: str = "any") -> str:
    """A ``<select>`` with a blank first option."""
    items = [f'<option value="">{escape(blank)}</option>']
    for option in options:
        picked = " selected" if option == chosen else ""
        items.append(f'<option value="{escape(option)}"{picked}>{escape(option)}</option>')
    return f'<select name="{escape(name)}" id="f-{escape(name)}">{"".join(items)}</select>'


def button_form(
    action: str,
    label: str,
    *,
    css: str = "",
    fields: dict[str, str] | None = None,
    confirm: str = "",
) -> str:
    """A one-button POST form (the actions: cancel, retry, replay)."""
    hidden = "".join(
        f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">'
        for k, v in (fields or {}).items()
    )
    confirm_attr = f' data-confirm="{escape(confirm)}"' if confirm else ""
    return (
        f'<form method="post" action="{escape(action)}" class="inline"{confirm_attr}>'
        f'{hidden}<button type="submit" class="{css}">{escape(label)}</button></form>'
    )
