"""Waiting nodes on the dashboard: what each waits for and until when, and a signal form."""

from __future__ import annotations

from html import escape

import deerflow._codec as _codec
from deerflow.core.state import waits_of
from deerflow.errors import DeerflowError
from deerflow.waiting import SignalKind, pending_signals
from deerflow.web._html import when
from deerflow.web._runs import RunDetail


def _takes_signals(detail: RunDetail) -> bool:
    """Whether a signal could serve the run: it has a wait for one, or its definition is not
    here to say it has none."""
    wf = detail.workflow
    return wf is None or any(isinstance(t.kind, SignalKind) for t in wf.tasks.values())


def _awaited(detail: RunDetail) -> list[str]:
    """Names of the signals the run's waiting nodes wait for (when the definition is here)."""
    wf = detail.workflow
    if wf is None:
        return []
    names = []
    for tid in waits_of(detail.state):
        kind = wf.get(tid).kind if tid in wf.tasks else None
        if isinstance(kind, SignalKind):
            names.append(str(wf.get(tid).options["name"]))
    return names


def waiting_panel(detail: RunDetail) -> str | None:
    """The run's waiting nodes, the signals kept for later, and (while it runs) a signal form."""
    waits = waits_of(detail.state)
    kept = pending_signals(detail.state)
    if not waits and not kept and not _awaited(detail):
        return None
    rows = "".join(
        f'<tr data-wait="{escape(tid)}"><td>{escape(tid)}</td>'
        f"<td>{escape(str(w['for']))}</td><td>{when(w['deadline'])}</td></tr>"
        for tid, w in waits.items()
    )
    parts = []
    if rows:
        parts.append(
            "<table class='grid waits'><thead><tr><th>node</th><th>waits for</th>"
            f"<th>deadline (UTC)</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    if kept:
        names = ", ".join(f"<code>{escape(str(s['name']))}</code>" for s in kept)
        parts.append(f"<p class='muted'>signals kept for nodes not reached yet: {names}</p>")
    if not detail.state.terminal and _takes_signals(detail):
        awaited = _awaited(detail)
        name = escape(awaited[0]) if awaited else ""
        action = f"{escape(detail.state.run_id)}/signal"  # relative to /ui/runs/<id>
        parts.append(
            f"<form method='post' action='{action}' class='signal'>"
            f"<input name='name' value='{name}' placeholder='signal name' required size='14'>"
            "<input name='data' placeholder='data (JSON)' size='28'>"
            "<button type='submit'>Send signal</button></form>"
        )
    return "".join(parts)


def signal_form(form: dict[str, str]) -> tuple[str, object]:
    """The signal's name and data from the dashboard's form; ``DeerflowError`` if malformed."""
    name = form.get("name", "").strip()
    text = form.get("data", "").strip()
    try:
        data = _codec.loads(text) if text else None
    except ValueError as exc:
        raise DeerflowError(f"data is not JSON: {exc}") from None
    return name, data


__all__ = ["signal_form", "waiting_panel"]
