"""State machines on the dashboard: the transition form/API and the current-state panel."""

from __future__ import annotations

from html import escape
from typing import Any

from deerflow.engine import Engine
from deerflow.statemachine import StateMachineMixin
from deerflow.web._runs import ActionRefused, RunDetail, find_run

#: Seconds to wait for a transition to be applied before answering that it is still pending.
APPLY_TIMEOUT = 30.0


async def send_transition(
    engine: Engine, run_id: str, transition: str, data: dict[str, Any]
) -> dict[str, Any]:
    """Apply ``transition`` to instance ``run_id`` (``TransitionNotAllowed`` → 409).

    Raises:
        RunNotFound: no run has that id (or prefix).
        ActionRefused: the run is not a state-machine instance.
    """
    state = await find_run(engine, run_id)
    wf = engine.registry.get(state.workflow, state.version)
    if state.machine_state is None and (wf is None or not wf.takes_requests()):
        raise ActionRefused(f"run {state.run_id} is not a state-machine instance")
    try:
        result = await engine.send(
            state.run_id, transition, payload=data or None, timeout=APPLY_TIMEOUT
        )
    except TimeoutError:  # durable, but its owner has not applied it yet
        return {"run_id": state.run_id, "transition": transition, "status": "pending"}
    return {
        "run_id": state.run_id,
        "transition": transition,
        "state": result.state,
        "status": result.status,
    }


def machine_panel(detail: RunDetail) -> str | None:
    """Current state, the transitions allowed from it, and the transition history."""
    wf = detail.workflow
    if detail.result.state is None and not detail.result.transitions:
        return None
    machine = wf.machine if isinstance(wf, StateMachineMixin) else None
    allowed = machine.allowed(detail.result.state or "") if machine else []
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
