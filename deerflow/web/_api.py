"""The JSON API under ``/api/``: everything the dashboard shows and does.

Errors are JSON ``{"error": ...}``: 400 for a bad parameter, 401 without an accepted API key
(when keys are configured), 404 for an unknown run or dead letter (saying no more than that),
405 for a method a path does not take, 408 for a body not sent within ``body_timeout``,
409 for an action that does not apply to the run as it is (or a backfill
to its schedule: one running already, a reversed range, too many ticks), 413 for a body over
:data:`MAX_BODY`, 429 while ``api_max_pending`` requests are being answered, 501 for an
extension nobody loaded. The document describing all of it is ``GET /api/openapi.json``
(:mod:`._openapi`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

import deerflow._codec as _codec
from deerflow.connectors.integration import json_reply
from deerflow.connectors.schedule import BackfillRefused, ScheduleControl, ScheduleNotFound
from deerflow.connectors.webhook import BodyTooLargeError, read_body
from deerflow.errors import DeerflowError, InvalidSignal, RunNotFound, TransitionNotAllowed
from deerflow.events import trigger_name
from deerflow.web import _dlq, _runs, _schedules
from deerflow.web._context import context
from deerflow.web._extend import probe_trigger, transition_handler
from deerflow.web._openapi import document

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: The largest request body the API reads (its bodies are a reason or a transition).
MAX_BODY = 64 * 1024


def reply(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON response."""
    return json_reply(status, body, headers)


def _problem(exc: DeerflowError, request: web.Request) -> web.Response:
    if isinstance(exc, RunNotFound):
        text = request.match_info.get("run_id", "")
        return reply({"error": _runs.public_message(exc, text)}, 404)
    if isinstance(exc, _dlq.DeadLetterNotFound | ScheduleNotFound):
        return reply({"error": str(exc)}, 404)
    if isinstance(
        exc,
        _runs.ActionRefused | TransitionNotAllowed | _schedules.BackfillRunning | BackfillRefused,
    ):
        return reply({"error": str(exc)}, 409)
    return reply({"error": str(exc)}, 400)


def _http_problem(exc: web.HTTPException) -> web.Response:
    """aiohttp's own refusals (405, 404 of an unknown path) as JSON, keeping their headers."""
    kept = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
    return reply({"error": exc.reason.lower()}, exc.status, kept)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Deerflow errors and bad parameters as JSON, with the right status."""
    try:
        return await handler(request)
    except DeerflowError as exc:
        return _problem(exc, request)
    except ValueError as exc:
        return reply({"error": str(exc)}, 400)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _http_problem(exc)


def pending_limit(limit: int) -> Middleware:
    """A middleware answering 429 while ``limit`` API requests are being answered."""
    pending = 0

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        nonlocal pending
        if pending >= limit:
            return reply({"error": "too many requests in progress"}, 429, {"Retry-After": "1"})
        pending += 1
        try:
            return await handler(request)
        finally:
            pending -= 1

    return middleware


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        async with asyncio.timeout(context(request).body_timeout):
            raw = await read_body(request, MAX_BODY)
    except BodyTooLargeError:
        raise web.HTTPRequestEntityTooLarge(
            max_size=MAX_BODY, actual_size=request.content_length or MAX_BODY + 1
        ) from None
    except TimeoutError:
        raise web.HTTPRequestTimeout() from None
    if not raw.strip():
        return {}
    try:
        body = _codec.loads(raw)
    except ValueError as exc:
        raise ValueError(f"body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    try:
        _codec.bounded_json_value(body)  # what a history event can hold
    except TypeError as exc:
        raise ValueError(f"body cannot be accepted: {exc}") from None
    return body


def _reason(body: dict[str, Any], default: str) -> str:
    if "reason" not in body:
        return default
    reason = body["reason"]
    if not isinstance(reason, str):
        raise ValueError(f"'reason' must be a string, not {type(reason).__name__}")
    return reason or default


def _limit(request: web.Request, default: int = 100) -> int:
    text = request.query.get("limit")
    if text is None:
        return default
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"limit must be a whole number from 0, not {text!r}")
    return int(text)


def _time(request: web.Request, name: str) -> float | None:
    text = request.query.get(name)
    return None if text is None else _runs.parse_time(text, strict=True)


async def list_runs(request: web.Request) -> web.StreamResponse:
    """``GET /api/runs``."""
    q = request.query
    where = _runs.RunFilter(
        workflow=q.get("workflow") or None,
        status=q.get("status") or None,
        trigger=q.get("trigger") or None,
        since=_time(request, "since"),
        until=_time(request, "until"),
        limit=_limit(request),
        parent=q.get("parent") or None,
        after=q.get("after") or None,
    )
    try:
        runs = await _runs.list_runs(context(request).engine, where)
    except RunNotFound as exc:  # the page's cursor: its text is the caller's own
        return reply({"error": str(exc)}, 404)
    full = where.limit is not None and len(runs) == where.limit and runs
    return reply(
        {"runs": [_runs.summary(s) for s in runs], "next": runs[-1].run_id if full else None}
    )


async def get_run(request: web.Request) -> web.StreamResponse:
    """``GET /api/runs/{run_id}``."""
    detail = await _runs.run_detail(context(request).engine, request.match_info["run_id"])
    return reply(detail.as_json())


async def get_history(request: web.Request) -> web.StreamResponse:
    """``GET /api/runs/{run_id}/history``."""
    engine = context(request).engine
    state = await _runs.find_run(engine, request.match_info["run_id"])
    events = await _runs.history(engine, state.run_id, _limit(request, _runs.HISTORY_LIMIT))
    return reply({"run_id": state.run_id, "events": events})


async def cancel_run(request: web.Request) -> web.StreamResponse:
    """``POST /api/runs/{run_id}/cancel``."""
    body = await _body(request)
    reason = _reason(body, "cancelled through the API")
    state = await _runs.request_cancel(
        context(request).engine, request.match_info["run_id"], reason
    )
    return reply({"run_id": state.run_id, "action": "cancel", "reason": reason}, 202)


async def retry_run(request: web.Request) -> web.StreamResponse:
    """``POST /api/runs/{run_id}/retry``."""
    body = await _body(request)
    engine = context(request).engine
    state = await _runs.find_run(engine, request.match_info["run_id"])
    number = await _runs.request_retry(
        engine, state.run_id, _reason(body, "retried through the API")
    )
    return reply({"run_id": state.run_id, "action": "retry", "retry": number}, 202)


async def send_signal(request: web.Request) -> web.StreamResponse:
    """``POST /api/runs/{run_id}/signals/{name}``: body ``{"data": ..., "signal_id": ...}``.

    422 for a body that is not what a signal carries (not JSON, a bad ``signal_id``).
    """
    try:
        body = await _body(request)
        signal_id = body.get("signal_id")
        if signal_id is not None and (not isinstance(signal_id, str) or not signal_id):
            raise ValueError("'signal_id' must be a non-empty string")
    except ValueError as exc:
        return reply({"error": str(exc)}, 422)
    name = request.match_info["name"]
    try:
        run_id, sid = await _runs.request_signal(
            context(request).engine, request.match_info["run_id"], name, body.get("data"), signal_id
        )
    except InvalidSignal as exc:
        return reply({"error": str(exc)}, 422)
    return reply({"run_id": run_id, "action": "signal", "signal": name, "signal_id": sid}, 202)


async def send_transition(request: web.Request) -> web.StreamResponse:
    """``POST /api/runs/{run_id}/transitions`` (state machines; an extension point)."""
    handler = transition_handler(context(request).engine)
    if handler is None:
        return reply({"error": "no state-machine support is loaded in this process"}, 501)
    body = await _body(request)
    name = body.get("transition")
    if not isinstance(name, str) or not name:
        raise ValueError("body needs a 'transition' name (a non-empty string)")
    data = body.get("data")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"'data' must be a JSON object, not {type(data).__name__}")
    result = await handler(context(request).engine, request.match_info["run_id"], name, data)
    return reply(result, 202)


async def list_workflows(request: web.Request) -> web.StreamResponse:
    """``GET /api/workflows``: the definitions loaded in this process."""
    return reply(
        {
            "workflows": [
                {
                    "name": wf.name,
                    "version": wf.version,
                    "description": wf.description,
                    "tasks": [
                        {"id": t.id, "kind": t.kind.name, "depends_on": list(t.depends_on)}
                        for t in wf.tasks.values()
                    ],
                    "triggers": [trigger_name(wf.name, t) for t in wf.triggers],
                }
                for wf in context(request).engine.registry
            ]
        }
    )


async def list_triggers(request: web.Request) -> web.StreamResponse:
    """``GET /api/triggers``."""
    engine = context(request).engine
    rows = await _runs.trigger_status(engine)
    for row in rows:
        row.update(await probe_trigger(engine, row["name"]))
    return reply({"triggers": rows})


async def list_dead_letters(request: web.Request) -> web.StreamResponse:
    """``GET /api/dlq``."""
    entries = await _dlq.dead_letters(context(request).engine, limit=_limit(request, 500))
    return reply({"dead_letters": [e.as_json() for e in entries]})


async def replay_dead_letter(request: web.Request) -> web.StreamResponse:
    """``POST /api/dlq/{ref}/replay``."""
    ref = request.match_info["ref"]
    done = await _dlq.replay(context(request).engine, ref)
    return reply({"ref": ref, "done": done}, 202)


async def list_schedules(request: web.Request) -> web.StreamResponse:
    """``GET /api/schedules``."""
    infos = await ScheduleControl(context(request).engine).list_schedules()
    return reply({"schedules": [i.as_json() for i in infos]})


async def pause_schedule(request: web.Request) -> web.StreamResponse:
    """``POST /api/schedules/{name}/pause``."""
    return await _control(request, pause=True)


async def resume_schedule(request: web.Request) -> web.StreamResponse:
    """``POST /api/schedules/{name}/resume``."""
    return await _control(request, pause=False)


async def _control(request: web.Request, *, pause: bool) -> web.StreamResponse:
    control, name = ScheduleControl(context(request).engine), request.match_info["name"]
    changed = await (control.pause(name) if pause else control.resume(name))
    return reply({"name": name, "paused": pause, "changed": changed})


async def backfill_schedule(request: web.Request) -> web.StreamResponse:
    """``POST /api/schedules/{name}/backfill``."""
    name = request.match_info["name"]
    first, last, parallel = _schedules.backfill_options(await _body(request))
    run_ids = _schedules.start_backfill(context(request), name, first, last, parallel)
    return reply({"schedule": name, "ticks": len(run_ids), "run_ids": run_ids}, 202)


async def openapi(request: web.Request) -> web.StreamResponse:
    """``GET /api/openapi.json``."""
    return reply(document())


def routes() -> list[web.RouteDef]:
    """The API's routes, relative to ``/api``."""
    return [
        web.get("/runs", list_runs),
        web.get("/runs/{run_id}", get_run),
        web.get("/runs/{run_id}/history", get_history),
        web.post("/runs/{run_id}/cancel", cancel_run),
        web.post("/runs/{run_id}/retry", retry_run),
        web.post("/runs/{run_id}/transitions", send_transition),
        web.post("/runs/{run_id}/signals/{name}", send_signal),
        web.get("/workflows", list_workflows),
        web.get("/triggers", list_triggers),
        web.get("/dlq", list_dead_letters),
        web.post("/dlq/{ref}/replay", replay_dead_letter),
        web.get("/schedules", list_schedules),
        web.post("/schedules/{name}/pause", pause_schedule),
        web.post("/schedules/{name}/resume", resume_schedule),
        web.post("/schedules/{name}/backfill", backfill_schedule),
        web.get("/openapi.json", openapi),
    ]
