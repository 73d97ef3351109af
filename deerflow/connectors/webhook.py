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

import asyncio
import hashlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import orjson
from aiohttp import web
from pydantic import ValidationError

import deerflow._codec as _codec
from deerflow._durations import parse_duration
from deerflow.connectors import _cloudevents
from deerflow.connectors._auth import ApiKeys, configured_secrets, presented_key
from deerflow.connectors._bodykeys import KEY_WINDOW, BodyKeys
from deerflow.connectors._httplimits import HttpLimits, cap_connections
from deerflow.connectors._providers import Scheme, scheme_for
from deerflow.connectors.base import (
    EventRequest,
    RunRequest,
    TriggerSource,
    run_id_for,
    too_large,
    unstorable,
)
from deerflow.errors import ConnectorError, DeerflowError, RunNotFound
from deerflow.events import CloudEvent, WebhookEvent, WebhookRequestEvent, trigger_name
from deerflow.runtime import Engine

log = logging.getLogger("deerflow.connectors.webhook")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_HIDDEN = frozenset({"authorization", "x-api-key", "cookie", "proxy-authorization"})
_CHUNK = 64 * 1024
#: The longest ``Idempotency-Key`` (or delivery id) taken, as Stripe's.
MAX_DELIVERY_ID = 255


@dataclass(frozen=True, slots=True)
class WebhookRoute:
    """One webhook trigger with its resolved signing secrets and signature scheme."""

    workflow: str
    trigger: WebhookEvent
    name: str
    secrets: tuple[str, ...] = ()
    scheme: Scheme = field(default_factory=Scheme)
    #: event types each request becomes instead of a run (``wait_for_event(source=...)``)
    events: tuple[str, ...] = ()


def _json(status: int, body: Any, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=_codec.dumps(body), headers=headers, content_type="application/json"
    )


def _error(status: int, message: str, **headers: str) -> web.Response:
    return _json(status, {"error": message}, headers)


def _text(value: str) -> str:
    """Header and query text as storable UTF-8 (bytes that were not UTF-8 become U+FFFD)."""
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def body_digest(raw: bytes) -> str:
    """What an idempotency key remembers of a body: ``sha256:<hex>``."""
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def _other_body(recorded: Mapping[str, Any] | None, digest: str, text: str | None = None) -> bool:
    """Whether what a key recorded (a run's trigger event, a wait's bound digest) came with a
    body other than ``digest``'s; ``text`` is the body's, for runs recorded before digests."""
    if not recorded:
        return False
    kept = recorded.get("body_digest")
    if kept is None:  # a run recorded before digests were kept: compare its text
        return text is not None and recorded.get("text") != text
    return bool(kept != digest)


def _text_of(run: RunRequest) -> str | None:
    return run.event.text if isinstance(run.event, WebhookRequestEvent) else None


#: Fields of a form-encoded body decoded at most (a bound on what one request makes in memory).
MAX_FORM_FIELDS = 1000


def decode_body(raw: bytes, content_type: str) -> Any:
    """The body as data: JSON, or a form (``application/x-www-form-urlencoded``, as Slack's
    slash commands) as a dict of its last values, a JSON ``payload`` field decoded (Slack's
    interactions).

    Raises:
        ValueError: the body is neither, saying why.
    """
    if content_type == "application/x-www-form-urlencoded":
        try:
            form = dict(
                parse_qsl(raw.decode(), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
            )
        except (UnicodeDecodeError, ValueError) as exc:
            raise ValueError(f"body is not a form: {exc}") from None
        payload = form.get("payload", "")
        if payload.startswith("{"):
            try:
                return {**form, "payload": orjson.loads(payload)}
            except orjson.JSONDecodeError:
                return form
        return form
    try:
        return orjson.loads(raw) if raw.strip() else None
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"body is not JSON: {exc}") from None


def dedupe_value(path: str, headers: Mapping[str, str], body: Any) -> str | None:
    """The value a ``dedupe_key`` path (``body.a.b`` or ``headers.Name``) names, or ``None``."""
    root, _, rest = path.partition(".")
    if root == "headers":
        return headers.get(rest) or None
    value = body
    for part in rest.split("."):
        if isinstance(value, Mapping):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    if isinstance(value, bool) or not isinstance(value, str | int | float) or value == "":
        return None
    return str(value)


class _RefusedError(Exception):
    """A request refused part-way; ``response`` says why."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


def _checked(trigger: WebhookEvent, body: Any) -> Any:
    """``body`` validated by the trigger's ``payload_schema``; :class:`_RefusedError` if not."""
    if trigger.payload_schema is None:
        return body
    try:
        return trigger.payload_schema.model_validate(body).model_dump(mode="json")
    except ValidationError as exc:
        # No context: it may hold the validator's exception object, not JSON.
        detail = exc.errors(include_url=False, include_input=False, include_context=False)
        raise _RefusedError(
            _json(422, {"error": "payload does not match the schema", "detail": detail})
        ) from None
    except ValueError as exc:  # valid, but pydantic cannot dump it (nested too deeply)
        raise _RefusedError(_error(400, f"body cannot be accepted: {exc}")) from None


class BodyTooLargeError(Exception):
    """A request body over its limit (answered 413)."""


async def read_body(request: web.Request, limit: int) -> bytes:
    """The body, never holding more than ``limit`` + one chunk in memory.

    A declared ``Content-Length`` over the limit is refused before anything is read; a
    chunked body is refused as soon as it passes the limit.

    Raises:
        BodyTooLargeError: the body is longer than ``limit`` bytes.
    """
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLargeError
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(_CHUNK):
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError
        chunks.append(chunk)
    return b"".join(chunks)


class WebhookGateway(TriggerSource[None]):
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
        return _error(401, "missing or invalid API key", **{"WWW-Authenticate": "Bearer"})

    def _busy(self, route: WebhookRoute) -> web.Response | None:
        if not route.events and self.saturated():  # a wait's events start nothing (saturated)
            return _error(503, "too many runs in progress", **{"Retry-After": "5"})
        if self.pending >= self.max_pending:
            return _error(429, "too many requests in progress", **{"Retry-After": "1"})
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

    async def _accept(self, route: WebhookRoute, request: web.Request) -> web.StreamResponse:
        trigger = route.trigger
        try:
            async with asyncio.timeout(self.body_timeout):
                raw = await read_body(request, trigger.max_body)
        except BodyTooLargeError:
            return _error(413, f"body over {trigger.max_body} bytes", Connection="close")
        except TimeoutError:
            return _error(408, f"body not received within {self.body_timeout}s", Connection="close")
        if route.secrets:
            problem = route.scheme.problem(
                request.headers, raw, route.secrets, tolerance=trigger.tolerance
            )
            if problem is not None:
                return _error(401, problem)
        try:
            cloudevents = _cloudevents.from_http(request.headers, request.content_type, raw)
            body = None if cloudevents is not None else decode_body(raw, request.content_type)
        except ValueError as exc:
            return _error(400, str(exc))
        handshake = route.scheme.reply(body) if route.secrets else None
        if handshake is not None:
            return _json(200, handshake)  # the sender checking the URL: no run
        try:
            if cloudevents is not None:
                return await self._request_cloudevents(route, request, raw, cloudevents)
            return await self._request_run(route, request, raw, _checked(trigger, body))
        except _RefusedError as refused:
            return refused.response

    async def _request_run(
        self, route: WebhookRoute, request: web.Request, raw: bytes, body: Any
    ) -> web.StreamResponse:
        trigger = route.trigger
        headers = request.headers
        # A key the caller chose is bound to its body (another body with it is refused); an
        # id the sender or the body carries names the event, whatever else its retry changed.
        delivery = headers.get("Idempotency-Key") or (
            headers.get(trigger.delivery_id_header) if trigger.delivery_id_header else None
        )
        bound = delivery is not None
        if delivery is None and trigger.dedupe_key is not None:
            delivery = dedupe_value(trigger.dedupe_key, headers, body)
            if delivery is None:
                return _error(400, f"the request has no {trigger.dedupe_key} (dedupe_key)")
        if delivery is None and route.secrets:
            delivery = route.scheme.delivery(headers, body)
        if delivery is not None and len(delivery) > MAX_DELIVERY_ID:
            return _error(400, f"Idempotency-Key is longer than {MAX_DELIVERY_ID} characters")
        digest = body_digest(raw) if bound else None
        identity = f"{trigger.path}\x00{delivery}" if delivery else None
        signed = route.scheme.signed(headers, raw) if route.secrets else None
        if identity is None and signed is not None:
            identity = f"{trigger.path}\x00{signed}"
        if route.events:
            key = (identity, digest, delivery) if identity and digest and delivery else None
            return await self._publish(route, [(identity, body)], key)
        event = self._event(route, request, body, raw.decode("utf-8", "replace"), delivery)
        run = self._run(route, identity, event.model_copy(update={"body_digest": digest}))
        known = self.engine.index.runs.get(run.run_id)
        if (
            digest is not None
            and known is not None
            and _other_body(known.trigger, digest, _text_of(run))
        ):
            return self._key_reused(delivery)  # a repeat seen already: nothing to append
        await self._submit(trigger, [run])
        if digest is not None and await self._reused_with_another_body(run, digest):
            return self._key_reused(delivery)
        return _json(202, self._started(request, run))

    async def _request_cloudevents(
        self, route: WebhookRoute, request: web.Request, raw: bytes, events: list[CloudEvent]
    ) -> web.StreamResponse:
        """One run per CloudEvent, named by its source and id (a duplicate is the same run)."""
        trigger = route.trigger
        if route.events:
            ids = [f"{trigger.path}\x00{_cloudevents.identity(c)}" for c in events]
            checked = [_checked(trigger, c.data) for c in events]
            return await self._publish(route, list(zip(ids, checked, strict=True)))
        runs = []
        for cloudevent in events:
            body = _checked(trigger, cloudevent.data)
            text = raw.decode("utf-8", "replace") if len(events) == 1 else ""
            event = self._event(route, request, body, text, cloudevent.id).model_copy(
                update={"cloudevent": cloudevent}
            )
            runs.append(
                self._run(route, f"{trigger.path}\x00{_cloudevents.identity(cloudevent)}", event)
            )
        await self._submit(trigger, runs)
        if request.content_type == _cloudevents.BATCH:
            return _json(202, {"runs": [self._started(request, run) for run in runs]})
        return _json(202, self._started(request, runs[0]))

    def _event(
        self,
        route: WebhookRoute,
        request: web.Request,
        body: Any,
        text: str,
        delivery: str | None,
    ) -> WebhookRequestEvent:
        hidden = _HIDDEN | route.scheme.hidden
        return WebhookRequestEvent(
            trigger=route.name,
            received_at=time.time(),
            path=request.path,
            method=request.method,
            headers={k: _text(v) for k, v in request.headers.items() if k.lower() not in hidden},
            body=body,
            text=text,
            query={_text(k): _text(v) for k, v in request.query.items()},
            delivery_id=_text(delivery) if delivery else None,
        )

    def _run(
        self, route: WebhookRoute, identity: str | None, event: WebhookRequestEvent
    ) -> RunRequest:
        """The run ``event`` asks for; :class:`_RefusedError` (400, or 413 when too large
        for the log) if it cannot be stored."""
        run = RunRequest(route.workflow, run_id_for(route.workflow, "webhook", identity), event)
        problem = unstorable(run)
        if problem is not None:
            raise _RefusedError(_error(400, f"body cannot be accepted: {problem}"))
        problem = too_large(self.engine, run)
        if problem is not None:
            raise _RefusedError(_error(413, problem, Connection="close"))
        return run

    async def _publish(
        self,
        route: WebhookRoute,
        bodies: list[tuple[str | None, Any]],
        key: tuple[str, str, str] | None = None,
    ) -> web.StreamResponse:
        """Append each body as the route's events; 202 ``{"event_id"}`` (``{"event_ids"}`` for
        several) once durable. A body without identity is an event of its own. ``key`` is the
        identity, body digest and ``Idempotency-Key`` of a keyed request: refused (422, nothing
        appended) when the key was used with another body already, as for a run trigger."""
        requests = []
        for identity, body in bodies:
            try:
                _codec.bounded_json_value(body)
            except (TypeError, ValueError) as exc:
                return _error(400, f"body cannot be accepted: {exc}")
            ident = identity or uuid.uuid4().hex
            request = EventRequest(route.events, ident, body, f"webhook:{route.trigger.path}")
            problem = too_large(self.engine, request)
            if problem is not None:
                return _error(413, problem, Connection="close")
            requests.append(request)
        if key is not None and await self._reused_for_events(route.trigger, key[0], key[1]):
            raise _RefusedError(self._key_reused(key[2]))
        await self._submit(route.trigger, requests)
        ids = [r.events()[0].id for r in requests]
        return _json(202, {"event_id": ids[0]} if len(ids) == 1 else {"event_ids": ids})

    async def _submit(
        self, trigger: WebhookEvent, runs: list[RunRequest] | list[EventRequest]
    ) -> None:
        try:
            await self.submit(runs, give_up_after=self.give_up_after)
        except ConnectorError as exc:
            log.error("webhook %s: run request not durable: %s", trigger.path, exc)
            raise _RefusedError(
                _error(503, "the run could not be recorded; try again", **{"Retry-After": "5"})
            ) from None

    def _started(self, request: web.Request, run: RunRequest) -> dict[str, str]:
        base = self.public_url or f"{request.scheme}://{request.host}"
        return {"run_id": run.run_id, "status_url": f"{base}{self.status_path}/{run.run_id}"}

    async def _reused_for_events(self, trigger: WebhookEvent, identity: str, digest: str) -> bool:
        """Whether the key of ``identity`` (a wait's webhook) was bound to another body first."""
        try:
            kept = await self._keys.bind(identity, digest)
        except DeerflowError as exc:
            log.error("webhook %s: idempotency key not recorded: %s", trigger.path, exc)
            raise _RefusedError(
                _error(503, "the event could not be recorded; try again", **{"Retry-After": "5"})
            ) from None
        return _other_body({"body_digest": kept}, digest)

    async def _reused_with_another_body(self, run: RunRequest, digest: str) -> bool:
        """Whether the run this key names was first requested with a body of another digest.

        Asked after the request is durable: of two concurrent requests with one key, the one
        whose body the run recorded first gets the run, the other 422. The digest is read from
        the run's own ``RunRequested``, so the answer is the same after a restart.
        """
        wf = self.engine.registry.get(run.workflow)
        if wf is not None and wf.route_trigger(run.event) is not None:
            return False  # a state machine's transition request: no run of that id
        state = await self.engine.index.wait(run.run_id, lambda s: s.requested, self.give_up_after)
        # Not folded in time: the request is durable, answer as usual.
        return state is not None and _other_body(state.trigger, digest, _text_of(run))

    @staticmethod
    def _key_reused(delivery: str | None) -> web.Response:
        return _error(
            422,
            f"Idempotency-Key {_text(delivery or '')!r} was already used with another body; "
            "send the same body again to get its run, or use a new key",
        )

    async def _status(self, request: web.Request) -> web.StreamResponse:
        if self.api_keys and not self.api_keys.accepts(presented_key(request.headers)):
            return _error(401, "missing or invalid API key", **{"WWW-Authenticate": "Bearer"})
        try:
            run = await self.engine.get_run(request.match_info["run_id"])
        except RunNotFound:
            return _error(404, "no such run")
        return _json(
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
