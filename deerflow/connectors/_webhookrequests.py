"""A webhook request once it passed the gateway's door (API key, saturation): its body
read, verified and decoded, then a run requested (or a wait's events appended) and answered
once durable; an ``Idempotency-Key`` is bound to its first body."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

import deerflow._codec as _codec
from deerflow.connectors import _cloudevents
from deerflow.connectors._bodykeys import BodyKeys
from deerflow.connectors._deliveries import (
    MAX_DELIVERY_ID,
    body_digest,
    dedupe_value,
    other_body,
    text_of,
)
from deerflow.connectors._httpbody import BodyTooLargeError, checked_body, decode_body, read_body
from deerflow.connectors._providers import Scheme
from deerflow.connectors._replies import RefusedError, error_reply, json_reply
from deerflow.connectors.base import (
    EventRequest,
    RunRequest,
    TriggerSource,
    run_id_for,
    too_large,
    unstorable,
)
from deerflow.errors import ConnectorError, DeerflowError
from deerflow.events import CloudEvent, WebhookEvent, WebhookRequestEvent

__all__ = ["WebhookRequests", "WebhookRoute"]

log = logging.getLogger("deerflow.connectors.webhook")

_HIDDEN = frozenset({"authorization", "x-api-key", "cookie", "proxy-authorization"})


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


def _text(value: str) -> str:
    """Header and query text as storable UTF-8 (bytes that were not UTF-8 become U+FFFD)."""
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


class WebhookRequests(TriggerSource[None]):
    """How :class:`~deerflow.connectors.webhook.WebhookGateway` handles a request let in."""

    body_timeout: float
    give_up_after: float
    status_path: str
    public_url: str | None
    _keys: BodyKeys

    async def _accept(self, route: WebhookRoute, request: web.Request) -> web.StreamResponse:
        trigger = route.trigger
        try:
            async with asyncio.timeout(self.body_timeout):
                raw = await read_body(request, trigger.max_body)
        except BodyTooLargeError:
            return error_reply(413, f"body over {trigger.max_body} bytes", Connection="close")
        except TimeoutError:
            return error_reply(
                408, f"body not received within {self.body_timeout}s", Connection="close"
            )
        if route.secrets:
            problem = route.scheme.problem(
                request.headers, raw, route.secrets, tolerance=trigger.tolerance
            )
            if problem is not None:
                return error_reply(401, problem)
        try:
            cloudevents = _cloudevents.from_http(request.headers, request.content_type, raw)
            body = None if cloudevents is not None else decode_body(raw, request.content_type)
        except ValueError as exc:
            return error_reply(400, str(exc))
        handshake = route.scheme.reply(body) if route.secrets else None
        if handshake is not None:
            return json_reply(200, handshake)  # the sender checking the URL: no run
        try:
            if cloudevents is not None:
                return await self._request_cloudevents(route, request, raw, cloudevents)
            return await self._request_run(route, request, raw, checked_body(trigger, body))
        except RefusedError as refused:
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
                return error_reply(400, f"the request has no {trigger.dedupe_key} (dedupe_key)")
        if delivery is None and route.secrets:
            delivery = route.scheme.delivery(headers, body)
        if delivery is not None and len(delivery) > MAX_DELIVERY_ID:
            return error_reply(400, f"Idempotency-Key is longer than {MAX_DELIVERY_ID} characters")
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
            and other_body(known.trigger, digest, text_of(run))
        ):
            return self._key_reused(delivery)  # a repeat seen already: nothing to append
        await self._submit(trigger, [run])
        if digest is not None and await self._reused_with_another_body(run, digest):
            return self._key_reused(delivery)
        return json_reply(202, self._started(request, run))

    async def _request_cloudevents(
        self, route: WebhookRoute, request: web.Request, raw: bytes, events: list[CloudEvent]
    ) -> web.StreamResponse:
        """One run per CloudEvent, named by its source and id (a duplicate is the same run)."""
        trigger = route.trigger
        if route.events:
            ids = [f"{trigger.path}\x00{_cloudevents.identity(c)}" for c in events]
            checked = [checked_body(trigger, c.data) for c in events]
            return await self._publish(route, list(zip(ids, checked, strict=True)))
        runs = []
        for cloudevent in events:
            body = checked_body(trigger, cloudevent.data)
            text = raw.decode("utf-8", "replace") if len(events) == 1 else ""
            event = self._event(route, request, body, text, cloudevent.id).model_copy(
                update={"cloudevent": cloudevent}
            )
            runs.append(
                self._run(route, f"{trigger.path}\x00{_cloudevents.identity(cloudevent)}", event)
            )
        await self._submit(trigger, runs)
        if request.content_type == _cloudevents.BATCH:
            return json_reply(202, {"runs": [self._started(request, run) for run in runs]})
        return json_reply(202, self._started(request, runs[0]))

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
        """The run ``event`` asks for; :class:`RefusedError` (400, or 413 when too large
        for the log) if it cannot be stored."""
        run = RunRequest(route.workflow, run_id_for(route.workflow, "webhook", identity), event)
        problem = unstorable(run)
        if problem is not None:
            raise RefusedError(error_reply(400, f"body cannot be accepted: {problem}"))
        problem = too_large(self.engine, run)
        if problem is not None:
            raise RefusedError(error_reply(413, problem, Connection="close"))
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
                return error_reply(400, f"body cannot be accepted: {exc}")
            ident = identity or uuid.uuid4().hex
            request = EventRequest(route.events, ident, body, f"webhook:{route.trigger.path}")
            problem = too_large(self.engine, request)
            if problem is not None:
                return error_reply(413, problem, Connection="close")
            requests.append(request)
        if key is not None and await self._reused_for_events(route.trigger, key[0], key[1]):
            raise RefusedError(self._key_reused(key[2]))
        await self._submit(route.trigger, requests)
        ids = [r.events()[0].id for r in requests]
        return json_reply(202, {"event_id": ids[0]} if len(ids) == 1 else {"event_ids": ids})

    async def _submit(
        self, trigger: WebhookEvent, runs: list[RunRequest] | list[EventRequest]
    ) -> None:
        try:
            await self.submit(runs, give_up_after=self.give_up_after)
        except ConnectorError as exc:
            log.error("webhook %s: run request not durable: %s", trigger.path, exc)
            raise RefusedError(
                error_reply(503, "the run could not be recorded; try again", **{"Retry-After": "5"})
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
            raise RefusedError(
                error_reply(
                    503, "the event could not be recorded; try again", **{"Retry-After": "5"}
                )
            ) from None
        return other_body({"body_digest": kept}, digest)

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
        return state is not None and other_body(state.trigger, digest, text_of(run))

    @staticmethod
    def _key_reused(delivery: str | None) -> web.Response:
        return error_reply(
            422,
            f"Idempotency-Key {_text(delivery or '')!r} was already used with another body; "
            "send the same body again to get its run, or use a new key",
        )
