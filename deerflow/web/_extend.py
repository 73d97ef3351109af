"""Extension points of the dashboard and API, for pattern modules built beside the core.

* **Run panels** — :func:`register_run_panel`: a function of a :class:`RunDetail` returning
  HTML (escaped by the panel) or ``None`` when it has nothing to say about that run. Saga
  steps and compensations are one (below); state machines (current state, transitions) and
  pipelines (per-stage throughput, queue depth, drops) plug in the same way.
* **State-machine transitions** — :func:`register_transition_handler`: what
  ``POST /api/runs/{id}/transitions`` (and the run page's form) does. Without one the API
  answers 501.
* **Trigger status** — :func:`register_trigger_probe`: extra columns for the triggers page and
  ``GET /api/triggers`` (e.g. a Kafka trigger's consumer-group lag).
* **Dead-letter replay** — :func:`deerflow.web.register_replayer` (in ``_dlq``).

Every event of a run's history is shown generically on the run page whatever its type, so
events of new patterns are visible before anyone writes a panel for them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from html import escape
from typing import Any

from deerflow.engine import Engine
from deerflow.web._runs import RunDetail, truncate

RunPanel = Callable[[RunDetail], str | None]
TransitionHandler = Callable[[Engine, str, str, dict[str, Any]], Awaitable[dict[str, Any]]]
TriggerProbe = Callable[[Engine, str], Awaitable[dict[str, Any]]]

_panels: dict[str, RunPanel] = {}
_transition: list[TransitionHandler] = []
_probes: list[TriggerProbe] = []


def register_run_panel(title: str, panel: RunPanel) -> RunPanel:
    """Show ``panel(detail)`` under ``title`` on run pages where it returns HTML."""
    _panels[title] = panel
    return panel


def run_panels(detail: RunDetail) -> list[tuple[str, str]]:
    """(title, HTML) of every panel with something to show for ``detail``."""
    shown = []
    for title, panel in _panels.items():
        html = panel(detail)
        if html:
            shown.append((title, html))
    return shown


def register_transition_handler(handler: TransitionHandler) -> TransitionHandler:
    """Handle state-machine transitions: ``await handler(engine, run_id, transition, data)``."""
    _transition[:] = [handler]
    return handler


def transition_handler() -> TransitionHandler | None:
    """The registered transition handler, if any."""
    return _transition[0] if _transition else None


def register_trigger_probe(probe: TriggerProbe) -> TriggerProbe:
    """Add ``await probe(engine, trigger_name)`` fields (e.g. ``lag``) to each trigger's status."""
    _probes.append(probe)
    return probe


async def probe_trigger(engine: Engine, name: str) -> dict[str, Any]:
    """Fields every probe adds for trigger ``name`` (a failing probe reports its error)."""
    fields: dict[str, Any] = {}
    for probe in _probes:
        try:
            fields.update(await probe(engine, name))
        except Exception as exc:  # one broken probe must not break the page
            fields.setdefault("probe_errors", []).append(repr(exc))
    return fields


# -- built-in panels ---------------------------------------------------------------------------


def saga_panel(detail: RunDetail) -> str | None:
    """Saga runs: each compensation task with the step it undoes and how it went."""
    found = getattr(detail.workflow, "compensations", None)
    compensations = found() if callable(found) else found
    if not compensations:
        return None
    rows = []
    for task_id, step in compensations.items():
        task = detail.result.tasks.get(task_id)
        status = task.status if task is not None else "not needed"
        step_status = detail.result.tasks[step].status if step in detail.result.tasks else ""
        rows.append(
            f"<tr><td>{escape(step)}</td><td><span class='badge st-{escape(step_status)}'>"
            f"{escape(step_status)}</span></td><td>{escape(task_id)}</td><td>"
            f"<span class='badge st-{escape(status)}'>{escape(status)}</span></td></tr>"
        )
    return (
        "<table class='grid'><thead><tr><th>step</th><th>step status</th>"
        "<th>compensation</th><th>compensation status</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )


def pattern_events_panel(detail: RunDetail) -> str | None:
    """Events of types the core does not define (state machines, pipelines, ...), as they are."""
    core = {
        "RunRequested",
        "TaskScheduled",
        "TaskCompleted",
        "TaskCollected",
        "TaskFailed",
        "TaskRequeued",
        "RunParked",
        "RunResumed",
        "TaskSkipped",
        "TaskAbandoned",
        "TimerStarted",
        "TimerFired",
        "RunCompleted",
        "RunFailed",
        "RunCompensated",
        "RunCompensationFailed",
        "RunCancelRequested",
        "RunCancelled",
        "RunRetryRequested",
    }
    extra = [e for e in detail.events if e.get("type") not in core]
    if not extra:
        return None
    items = []
    for event in extra[-50:]:
        fields = {k: v for k, v in event.items() if k not in ("id", "run_id", "v", "type")}
        items.append(
            f"<li><code>{escape(str(event.get('type')))}</code> "
            f"<code class='json'>{escape(truncate(fields, 400))}</code></li>"
        )
    return f"<ul class='events'>{''.join(items)}</ul>"


register_run_panel("Saga steps and compensations", saga_panel)
register_run_panel("Pattern events", pattern_events_panel)
