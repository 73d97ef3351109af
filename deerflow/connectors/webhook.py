"""The webhook gateway: an aiohttp server that starts a run for every accepted request.

Each :class:`~deerflow.events.WebhookEvent` becomes a route. A request is checked in this order,
cheapest first and always before its body is parsed: API key (401), saturation (503 when the
engine runs too many runs, 429 when too many requests are being answered), body size (413,
read in bounded chunks, within ``body_timeout``, else 408), HMAC signature over the raw body
(401; deerflow's scheme or the ``provider``'s, see :mod:`deerflow.connectors._providers`), JSON
or a form (400, also for JSON nested too deeply to store), the trigger's ``payload_schema``
(422). Then the run is requested and the answer, 202 with ``{"run_id", "status_url"}``, is
sent only once that request is durable. An ``Idempotency-Key`` (or the trigger's delivery-id
header) fixes the run id, so repeated or concurrent duplicates get the same run; the run
records a digest of the body, and the same key with another body is refused (422), also after
a restart. Without one, the trigger's ``dedupe_key`` (a body path) or the provider's delivery
id fixes the run id, whatever else a retry changed; without those, a signed request's
signature fixes the run id (a replayed signed
request is the same run). A connection that does not deliver its headers within
``idle_timeout`` is closed (slow clients); the limits are :class:`HttpLimits`.
``GET <status_path>/<run_id>`` reports a run.

The gateway's :attr:`WebhookGateway.app` is a plain ``aiohttp.web.Application``: more routes (a
dashboard, an API) can be added to it, or passed as ``extra_routes``, before :meth:`start`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from aiohttp import web

from deerflow._durations import parse_duration
from deerflow.connectors._auth import ApiKeys, configured_secrets, presented_key
from deerflow.connectors._bodykeys import KEY_WINDOW, BodyKeys
from deerflow.connectors._deliveries import MAX_DELIVERY_ID, body_digest, dedupe_value
from deerflow.connectors._httpbody import (
    MAX_FORM_FIELDS,
    BodyTooLargeError,
    decode_body,
    read_body,
)
from deerflow.connectors._httplimits import HttpLimits, cap_connections
from deerflow.connectors._providers import scheme_for
from deerflow.connectors._replies import error_reply, json_reply, unauthorized
from deerflow.connectors._webhookrequests import WebhookRequests, WebhookRoute
from deerflow.errors import ConnectorError, RunNotFound
from deerflow.events import WebhookEvent, trigger_name
from deerflow.runtime import Engine

__all__ = [
    "MAX_DELIVERY_ID",
    "MAX_FORM_FIELDS",
    "BodyTooLargeError",
    "WebhookGateway",
    "WebhookRoute",
    "body_digest",
    "decode_body",
    "dedupe_value",
    "read_body",
]

log = logging.getLogger("deerflow.connectors.webhook")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class WebhookGateway(WebhookRequests):
    """The HTTP face of deerflow's triggers; see the module docstring.

    Args:
        engine: the engine runs are requested on.
        host: address to listen on.
        port: port to listen on (0 picks a free one; see :attr:`port`).
        api_keys: accepted API keys; default from ``DEERFLOW_API_KEYS`` or ``config``.
        config: the ``[gateway]`` table of the configuration file (also the limits of
            :class:`~deerflow.connectors._httplimits.HttpLimits` not given here).
        max_pending: requests being answered at once before 429.
        give_up_after: seconds to keep retrying a failing store before answering 503.
        status_path: where run statuses are served.
        public_url: the base of status URLs (default: the request's own origin).
        extra_routes: more aiohttp routes for the same server.
        max_running: answer 503 while this many runs are running.
        body_timeout: seconds a request may take to send its body (else 408).
        idle_timeout: seconds a connection may stay idle, or take to send its headers, before
            it is closed.
        key_window: how long an ``Idempotency-Key`` of a wait's webhook stays bound to its
            first body (seconds or a duration such as ``3d``; default the config's
            ``key_window``, else 7 days).
    """

    source = "webhook"

    def __init__(
        self,
        engine: Engine,
        *,
        host: str = "127.0.0.1",
        port: int = 8000,
        api_keys: ApiKeys | None = None,
        config: Mapping[str, Any] | None = None,
        max_pending: int | None = None,
        give_up_after: float = 5.0,
        status_path: str = "/runs",
        public_url: str | None = None,
        extra_routes: Iterable[web.AbstractRouteDef] = (),
        max_running: int | None = None,
        body_timeout: float | None = None,
        idle_timeout: float | None = None,
        key_window: float | str | None = None,
    ) -> None:
        super().__init__(engine, "webhook-gateway", max_running=max_running)
        self._config = dict(config or {})
        window = key_window if key_window is not None else self._config.get("key_window")
        try:
            self.key_window = KEY_WINDOW if window is None else parse_duration(window, "key_window")
        except ValueError as exc:
            raise ConnectorError(f"[gateway] {exc}", retriable=False) from None
        self.limits = HttpLimits.configured(
            self._config,
            max_pending=max_pending,
            body_timeout=body_timeout,
            idle_timeout=idle_timeout,
        )
        self.body_timeout = self.limits.body_timeout
        self.idle_timeout = self.limits.idle_timeout
        self.host = host
        self._port = port
        self.api_keys = api_keys if api_keys is not None else ApiKeys.configured(self._config)
        self.max_pending = self.limits.max_pending
        self.give_up_after = give_up_after
        self.status_path = status_path.rstrip("/")
        self.public_url = public_url.rstrip("/") if public_url else None
        self.routes: list[WebhookRoute] = []
        self.pending = 0
        self.app = web.Application()
        self.app.router.add_get(self.status_path + "/{run_id}", self._status)
        self.app.router.add_routes(list(extra_routes))
        self._runner: web.AppRunner | None = None
        self._keys = BodyKeys(engine, window=self.key_window)

    def add_webhook(
        self,
        workflow: str,
        trigger: WebhookEvent,
        name: str | None = None,
        *,
        events: tuple[str, ...] = (),
    ) -> WebhookRoute:
        """Serve ``trigger`` for ``workflow`` (before :meth:`start`).

        With ``events``, each accepted request is appended as an event of each of those types
        (its body the ``data``, its delivery id the event's identity) for the runs waiting on
        it, and answered 202 ``{"event_id"}`` once durable; no run starts. Its
        ``Idempotency-Key`` is bound to its body as a run's is (kept by
        :class:`~deerflow.connectors._bodykeys.BodyKeys`).
        """
        own = [s.get_secret_value() for s in trigger.signing_secrets]
        signed = bool(own) or trigger.auth == "hmac" or trigger.provider is not None
        secrets = tuple(configured_secrets(own, self._config)) if signed else ()
        where = f"webhook {trigger.method} {trigger.path} of workflow {workflow!r}"
        taken = next(
            (
                r
                for r in self.routes
                if (r.trigger.method, r.trigger.path) == (trigger.method, trigger.path)
            ),
            None,
        )
        if taken is not None:
            raise ConnectorError(
                f"{where}: the path is served already (trigger {taken.name!r}); "
                "give one of them another path",
                retriable=False,
            )
        if signed and not secrets:
            needs = f"provider={trigger.provider!r}" if trigger.provider else "auth='hmac'"
            raise ConnectorError(
                f"{where}: {needs} but no signing secrets (signing_secrets="
                ", DEERFLOW_WEBHOOK_SECRETS or the config file)",
                retriable=False,
            )
        scheme = scheme_for(trigger.provider, trigger.signature_header)
        try:
            for secret in secrets:
                scheme.key(secret)
        except ConnectorError as exc:
            raise ConnectorError(f"{where}: {exc}", retriable=False) from None
        route = WebhookRoute(
            workflow, trigger, name or trigger_name(workflow, trigger), secrets, scheme, events
        )
        self.app.router.add_route(trigger.method, trigger.path, self._handler(route))
        self.routes.append(route)
        return route

    def _handler(self, route: WebhookRoute) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            return await self._trigger(route, request)

        return handle

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen; fails if a route needs API keys and none are configured."""
        if self._runner is not None:
            return
        if any(r.trigger.auth == "api_key" for r in self.routes) and not self.api_keys:
            raise ConnectorError(
                "a webhook uses auth='api_key' but no API keys are configured "
                "(DEERFLOW_API_KEYS or [gateway] api_keys)",
                retriable=False,
            )
        await self._attach_load()
        runner = web.AppRunner(
            self.app, access_log=None, shutdown_timeout=10.0, **self.limits.server_options()
        )
        await runner.setup()
        cap_connections(runner, self.limits.max_connections)
        await web.TCPSite(runner, self.host, self._port).start()
        self._runner = runner
        if self.routes:
            log.info(
                "webhook gateway on %s: %s",
                self.url,
                ", ".join(f"{r.trigger.method} {r.trigger.path}" for r in self.routes),
            )

    async def stop(self) -> None:
        """Stop listening; requests in flight are answered first."""
        self.stopping.set()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    @property
    def port(self) -> int:
        """The port listened on (the real one when started with port 0)."""
        if self._runner is not None:
            for address in self._runner.addresses:
                if isinstance(address, tuple):
                    return int(address[1])
        return self._port

    @property
    def url(self) -> str:
        """``http://host:port``."""
        return f"http://{self.host}:{self.port}"

    # -- requests -------------------------------------------------------------------------------

    def _auth_problem(self, route: WebhookRoute, request: web.Request) -> web.Response | None:
        if route.trigger.auth != "api_key":
            return None
        if self.api_keys.accepts(presented_key(request.headers)):
            return None
        return unauthorized()

    def _busy(self, route: WebhookRoute) -> web.Response | None:
        if not route.events and self.saturated():  # a wait's events start nothing (saturated)
            return error_reply(503, "too many runs in progress", **{"Retry-After": "5"})
        if self.pending >= self.max_pending:
            return error_reply(429, "too many requests in progress", **{"Retry-After": "1"})
        return None

    async def _trigger(self, route: WebhookRoute, request: web.Request) -> web.StreamResponse:
        refusal = self._auth_problem(route, request) or self._busy(route)
        if refusal is not None:
            return refusal
        self.pending += 1
        try:
            return await self._accept(route, request)
        finally:
            self.pending -= 1

    async def _status(self, request: web.Request) -> web.StreamResponse:
        if self.api_keys and not self.api_keys.accepts(presented_key(request.headers)):
            return unauthorized()
        try:
            run = await self.engine.get_run(request.match_info["run_id"])
        except RunNotFound:
            return error_reply(404, "no such run")
        return json_reply(
            200,
            {
                "run_id": run.run_id,
                "workflow": run.workflow,
                "status": run.status,
                "output": run.output,
                "error": run.error,
                "started_at": run.started_at,
                "finished_at": run.finished_at,
                "tasks": {tid: task.status for tid, task in run.tasks.items()},
            },
        )
