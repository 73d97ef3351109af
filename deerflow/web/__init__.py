"""The dashboard, the JSON API and ``/metrics``, on any aiohttp application.

``deerflow serve`` mounts them on its webhook gateway; ``deerflow ui --store URL`` serves them
alone (no workflows run; pass ``--app FILE`` to draw dependencies). Routes:

* ``/ui/`` — the dashboard (runs, run pages with the DAG, dead letters, triggers);
* ``/api/`` — the JSON API, described by ``/api/openapi.json``;
* ``/metrics`` — Prometheus metrics (:mod:`deerflow.metrics`).

All of them except the OpenAPI document and static files require an API key when keys are
configured (``DEERFLOW_API_KEYS`` or ``[gateway] api_keys``), as the webhooks do.
Extensions: a :class:`WebPlugin` adopted by the engine (``Engine(plugins=[...])`` or a
workflow's ``plugins``) adds run panels, API routes, trigger probes, dead-letter replayers or
the transition handler; :func:`register_run_panel`, :func:`register_transition_handler`,
:func:`register_trigger_probe` and :func:`register_replayer` still add them process-wide.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from deerflow._startup import stop_on_signals
from deerflow.connectors import ApiKeys, load_config
from deerflow.connectors.integration import HttpLimits, cap_connections
from deerflow.engine import Engine, Workflow
from deerflow.metrics import CONTENT_TYPE, EngineMetrics
from deerflow.observability.tracing import RunTracer
from deerflow.web import _actions, _api, _pages
from deerflow.web._auth import authorized, login_handler, logout_handler, require_key
from deerflow.web._context import CONTEXT, WebContext
from deerflow.web._dlq import register_replayer
from deerflow.web._extend import (
    WebPlugin,
    register_run_panel,
    register_transition_handler,
    register_trigger_probe,
    request_engine,
    web_plugins,
)
from deerflow.web._headers import protect
from deerflow.web._schedules import stop_backfills
from deerflow.web._session import session_ttl

__all__ = [
    "WebPlugin",
    "mount",
    "register_replayer",
    "register_run_panel",
    "register_transition_handler",
    "register_trigger_probe",
    "request_engine",
    "serve_ui",
]

STATIC = Path(__file__).parent / "static"
UI = "/ui"
_OWN_PREFIXES = ("/api/", f"{UI}/", "/metrics")


def _ui_app(ctx: WebContext, keys: ApiKeys, ttl: float) -> web.Application:
    ui = web.Application(
        middlewares=[
            require_key(
                keys,
                html_prefix=UI,
                open_paths=frozenset({f"{UI}/login"}),
                open_prefixes=(f"{UI}/static/",),
            )
        ]
    )
    ui[CONTEXT] = ctx
    ui.add_routes(
        [
            web.get("/", _pages.runs_page),
            web.get("/runs/{run_id}", _pages.run_page),
            web.post("/runs/{run_id}/cancel", _actions.cancel_action),
            web.post("/runs/{run_id}/retry", _actions.retry_action),
            web.post("/runs/{run_id}/transition", _actions.transition_action),
            web.post("/runs/{run_id}/signal", _actions.signal_action),
            web.get("/dlq", _actions.dlq_page),
            web.post("/dlq/{ref}/replay", _actions.replay_action),
            web.get("/triggers", _actions.triggers_page),
            web.get("/schedules", _actions.schedules_page),
            web.post(r"/schedules/{name}/{action:pause|resume|backfill}", _actions.schedule_action),
            web.post("/login", login_handler(keys, UI, ttl)),
            web.post("/logout", logout_handler(UI)),
            web.static("/static", STATIC),
        ]
    )
    return ui


def _counting(metrics: EngineMetrics) -> Middleware:
    """Count the gateway's answers (webhooks and run statuses) by route and status."""

    @web.middleware
    async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(_OWN_PREFIXES) or request.path in ("/", UI):
            return await handler(request)
        status = 500
        try:
            response: web.StreamResponse = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            resource = request.match_info.route.resource
            route = resource.canonical if resource is not None else "unmatched"
            metrics.webhook_responses.labels(route, str(status)).inc()

    return count


def mount(
    app: web.Application,
    engine: Engine,
    *,
    api_keys: ApiKeys | None = None,
    config: Mapping[str, Any] | None = None,
) -> EngineMetrics:
    """Add the dashboard, the API and ``/metrics`` to ``app`` (before it starts).

    Args:
        app: the application to extend (e.g. ``WebhookGateway.app``).
        engine: the engine whose runs are shown and acted on.
        api_keys: accepted keys; default from ``DEERFLOW_API_KEYS`` or ``config``.
        config: the ``[gateway]`` table of the configuration file.

    Returns:
        The metrics, started and stopped with ``app``.
    """
    settings = dict(config or {})
    keys = api_keys if api_keys is not None else ApiKeys.configured(settings)
    ttl = session_ttl(settings.get("session_ttl"))
    metrics = EngineMetrics(engine)
    limits = HttpLimits.configured(settings)
    ctx = WebContext(engine, metrics, UI, signed_in=bool(keys), body_timeout=limits.body_timeout)
    api = web.Application(
        middlewares=[
            _api.pending_limit(limits.api_max_pending),
            require_key(keys, open_paths=frozenset({"/api/openapi.json"})),
            _api.json_errors,
        ]
    )
    api[CONTEXT] = ctx
    api.add_routes(_api.routes())
    for plugin in web_plugins(engine):  # plugins adopted from now on add no route
        api.add_routes(plugin.routes())
    app.add_subapp("/api", api)
    app.add_subapp(UI, _ui_app(ctx, keys, ttl))

    async def metrics_page(request: web.Request) -> web.StreamResponse:
        if keys and not authorized(request, keys):
            return web.Response(
                status=401,
                text="missing or invalid API key\n",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    async def home(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(f"{UI}/")

    app.router.add_get("/metrics", metrics_page)
    app.router.add_get("/", home)
    app.router.add_get(UI, home)
    app.middlewares.append(_counting(metrics))
    protect(app)

    tracer = RunTracer(engine)  # run spans, when OpenTelemetry is set up (deerflow.tracing)

    async def started(_: web.Application) -> None:
        await metrics.start()
        await tracer.start()

    async def stopped(_: web.Application) -> None:
        await stop_backfills(ctx)
        await tracer.stop()
        await metrics.stop()

    app.on_startup.append(started)
    app.on_cleanup.append(stopped)
    return metrics


async def serve_ui(
    store: str | None,
    workflows: Iterable[Workflow] = (),
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    config: str | None = None,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the dashboard, API and metrics of ``store`` until ``stop`` (or SIGINT/SIGTERM).

    No workflow runs here: the engine only reads the log and appends operators' requests.
    ``on_ready`` gets the URL; by default it is printed as ``deerflow ui: listening on URL``.
    """
    stop = stop or asyncio.Event()
    stop_on_signals(stop)
    settings = load_config(config)
    async with Engine(store, list(workflows), orchestrate=False, work=False) as engine:
        app = web.Application()
        mount(app, engine, config=settings)
        limits = HttpLimits.configured(settings)
        runner = web.AppRunner(app, access_log=None, **limits.server_options())
        await runner.setup()
        cap_connections(runner, limits.max_connections)
        try:
            await web.TCPSite(runner, host, port).start()
            bound = next((a for a in runner.addresses if isinstance(a, tuple)), (host, port))
            url = f"http://{host}:{bound[1]}"
            if on_ready is not None:
                on_ready(url)
            else:
                print(f"deerflow ui: listening on {url}", flush=True)
            await stop.wait()
        finally:
            await runner.cleanup()
