"""State machines on the dashboard: the transition form/API and the current-state panel."""

from __future__ import annotations

from html import escape
from typing import Any

from deerflow.engine import Engine
from deerflow.web._extend import register_run_panel, register_transition_handler
from deerflow.web._runs import RunDetail


async def send_transition(
    engine: Engine, run_id: str, transition: str, data: dict[str, Any]
) -> dict[str, Any]:
    """Apply ``transition`` to instance ``run_id`` (``TransitionNotAllowed`` → 409)."""
    result = await engine.send(run_id, transition, payload=data or None, timeout=30.0)
    return {
        "run_id": run_id,
        "transition": transition,
        "state": result.state,
        "status": result.status,
    }


def machine_panel(detail: RunDetail) -> str | None:
    """Current state, the transitions allowed from it, and the transition history."""
    wf = detail.workflow
    if detail.result.state is None and not detail.result.transitions:
        return None
    allowed = wf.machine.allowed(detail.result.state or "") if wf and wf.machine else []
    rows = "".join(
        f"<tr><td>{escape(str(t.get('source') or ''))}</td>"
        f"<td>{escape(str(t.get('transition') or 'start'))}</td>"
        f"<td>{escape(str(t.get('target') or ''))}</td>"
        f"<td><span class='badge st-{escape(str(t.get('status')))}'>"
        f"{escape(str(t.get('status')))}</span></td>"
        f"<td class='error'>{escape(str(t.get('error') or ''))}</td></tr>"
        for t in detail.result.transitions
    )
    buttons = "".join(
        f"<button name='transition' value='{escape(name)}'>{escape(name)}</button> "
        for name in allowed
    )
    action = f"{escape(detail.result.run_id)}/transition"  # relative to /ui/runs/<id>
    form = (
        f"<form method='post' action='{action}' class='transitions'>{buttons}</form>"
        if buttons and not detail.result.done
        else ""
    )
    return (
        f"<p>current state: <strong class='state'>{escape(str(detail.result.state))}"
        f"</strong></p>{form}<table class='grid'><thead><tr><th>from</th><th>transition"
        f"</th><th>to</th><th>outcome</th><th>error</th></tr></thead><tbody>{rows}"
        "</tbody></table>"
    )


register_transition_handler(send_transition)
register_run_panel("State machine", machine_panel)
