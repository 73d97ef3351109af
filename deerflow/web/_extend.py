"""Extension points of the dashboard and API: a :class:`WebPlugin` contributes to them.

A web plugin is a :class:`~deerflow.runtime.plugins.Plugin` (hooks and services as any other)
that also adds to the dashboard and API of every engine adopting it, passed as
``Engine(plugins=[...])`` or carried by a workflow (``workflow.plugins``):

* **Run panels** — :meth:`WebPlugin.run_panels`: title -> a function of a :class:`RunDetail`
  returning HTML (escaped by the panel) or ``None`` when it has nothing to say about that run.
* **Routes** — :meth:`WebPlugin.routes`: aiohttp routes under ``/api`` (API keys required as
  for every API route; :func:`request_engine` gives a handler its engine). Routes are added
  when the dashboard is mounted: a plugin adopted later contributes its other parts only.
* **State-machine transitions** — :meth:`WebPlugin.transition_handler`: what
  ``POST /api/runs/{id}/transitions`` (and the run page's form) does.
* **Trigger status** — :meth:`WebPlugin.trigger_probes`: extra fields for the triggers page and
  ``GET /api/triggers`` (e.g. a Kafka trigger's consumer-group lag).
* **Dead-letter replay** — :meth:`WebPlugin.replayers`: source -> how to replay its letters.

The dashboard's own contributions (saga and state-machine panels, events of other types, the
transition handler) are those of :data:`BUILT_IN`, consulted after the engine's plugins. The
module functions :func:`register_run_panel`, :func:`register_transition_handler`,
:func:`register_trigger_probe` (and :func:`deerflow.web.register_replayer`) still work: they
fill one process-wide plugin every engine consults, after its own plugins.

Every event of a run's history is shown generically on the run page whatever its type, so
events of new patterns are visible before anyone writes a panel for them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from html import escape
from typing import TYPE_CHECKING, Any

from aiohttp import web

from deerflow.engine import Engine
from deerflow.runtime.plugins import Plugin
from deerflow.web._context import context
from deerflow.web._machines import machine_panel, send_transition
from deerflow.web._runs import RunDetail, truncate
from deerflow.web._waits import waiting_panel

if TYPE_CHECKING:  # types only: _dlq replays through the plugins of this module
    from deerflow.web._dlq import Replayer

RunPanel = Callable[[RunDetail], str | None]
TransitionHandler = Callable[[Engine, str, str, dict[str, Any]], Awaitable[dict[str, Any]]]
TriggerProbe = Callable[[Engine, str], Awaitable[dict[str, Any]]]


class WebPlugin(Plugin):
    """A plugin that adds to the dashboard and the API; override what you contribute."""

    def run_panels(self) -> Mapping[str, RunPanel]:
        """Panels shown on run pages, by title (a later plugin's panel replaces an earlier
        one of the same title)."""
        return {}

    def routes(self) -> Sequence[web.AbstractRouteDef]:
        """Routes added under ``/api`` when the dashboard is mounted."""
        return ()

    def transition_handler(self) -> TransitionHandler | None:
        """``await handler(engine, run_id, transition, data)`` for state-machine transitions."""
        return None

    def trigger_probes(self) -> Sequence[TriggerProbe]:
        """``await probe(engine, trigger_name)``: fields added to each trigger's status."""
        return ()

    def replayers(self) -> Mapping[str, Replayer]:
        """How dead letters of each ``source`` are replayed: ``await replayer(engine, entry)``."""
        return {}


class _Registered(WebPlugin):
    """What the module-level ``register_*`` functions add (for every engine of the process)."""

    def __init__(self) -> None:
        self.panels: dict[str, RunPanel] = {}
        self.handler: TransitionHandler | None = None
        self.probes: list[TriggerProbe] = []
        self.replaying: dict[str, Replayer] = {}

    def run_panels(self) -> Mapping[str, RunPanel]:
        return self.panels

    def transition_handler(self) -> TransitionHandler | None:
        return self.handler

    def trigger_probes(self) -> Sequence[TriggerProbe]:
        return self.probes

    def replayers(self) -> Mapping[str, Replayer]:
        return self.replaying


REGISTERED = _Registered()


def web_plugins(engine: Engine) -> Iterator[WebPlugin]:
    """The web plugins ``engine`` adopted, then the registered ones, then the built-in ones."""
    for plugin in engine.plugins:
        if isinstance(plugin, WebPlugin):
            yield plugin
    yield REGISTERED
    yield BUILT_IN


def request_engine(request: web.Request) -> Engine:
    """The engine a dashboard or API request (a plugin's route included) is served by."""
    return context(request).engine


def register_run_panel(title: str, panel: RunPanel) -> RunPanel:
    """Show ``panel(detail)`` under ``title`` on run pages where it returns HTML.

    Kept for existing code: a :class:`WebPlugin` passed to the engine does the same.
    """
    REGISTERED.panels[title] = panel
    return panel


def run_panels(engine: Engine, detail: RunDetail) -> list[tuple[str, str]]:
    """(title, HTML) of every panel with something to show for ``detail``."""
    panels: dict[str, RunPanel] = {}
    for plugin in reversed(list(web_plugins(engine))):  # built-in first: theirs lead the page
        panels.update(plugin.run_panels())
    shown = []
    for title, panel in panels.items():
        html = panel(detail)
        if html:
            shown.append((title, html))
    return shown


def register_transition_handler(handler: TransitionHandler) -> TransitionHandler:
    """Handle state-machine transitions: ``await handler(engine, run_id, transition, data)``.

    Kept for existing code: a :class:`WebPlugin` passed to the engine does the same.
    """
    REGISTERED.handler = handler
    return handler


def transition_handler(engine: Engine) -> TransitionHandler | None:
    """The transition handler of the first plugin of ``engine`` that has one."""
    return next((h for p in web_plugins(engine) if (h := p.transition_handler())), None)


def register_trigger_probe(probe: TriggerProbe) -> TriggerProbe:
    """Add ``await probe(engine, trigger_name)`` fields (e.g. ``lag``) to each trigger's status.

    Kept for existing code: a :class:`WebPlugin` passed to the engine does the same.
    """
    REGISTERED.probes.append(probe)
    return probe


async def probe_trigger(engine: Engine, name: str) -> dict[str, Any]:
    """Fields every probe adds for trigger ``name`` (a failing probe reports its error)."""
    fields: dict[str, Any] = {}
    for plugin in web_plugins(engine):
        for probe in plugin.trigger_probes():
            try:
                fields.update(await probe(engine, name))
            except Exception as exc:  # one broken probe must not break the page
                fields.setdefault("probe_errors", []).append(repr(exc))
    return fields


def replayer_for(engine: Engine, source: str) -> Replayer | None:
    """How the first plugin of ``engine`` that knows ``source`` replays its dead letters."""
    return next((r for p in web_plugins(engine) if (r := p.replayers().get(source))), None)


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


class _BuiltIn(WebPlugin):
    """The dashboard's own panels and transition handler (sagas, state machines, events)."""

    def run_panels(self) -> Mapping[str, RunPanel]:
        return {
            "Saga steps and compensations": saga_panel,
            "Pattern events": pattern_events_panel,
            "State machine": machine_panel,
            "Waiting": waiting_panel,
        }

    def transition_handler(self) -> TransitionHandler | None:
        return send_transition


BUILT_IN = _BuiltIn()
