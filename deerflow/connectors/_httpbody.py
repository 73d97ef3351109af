"""A webhook request's body: read within its limit, decoded (JSON or a form), checked
against the trigger's ``payload_schema``."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import orjson
from aiohttp import web
from pydantic import ValidationError

from deerflow.connectors._replies import RefusedError, error_reply, json_reply
from deerflow.events import WebhookEvent

__all__ = [
    "CHUNK",
    "MAX_FORM_FIELDS",
    "BodyTooLargeError",
    "checked_body",
    "decode_body",
    "read_body",
]

#: What a body is read in (bytes): the most it is held over its limit.
CHUNK = 64 * 1024
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


def checked_body(trigger: WebhookEvent, body: Any) -> Any:
    """``body`` validated by the trigger's ``payload_schema``; :class:`RefusedError` if not."""
    if trigger.payload_schema is None:
        return body
    try:
        return trigger.payload_schema.model_validate(body).model_dump(mode="json")
    except ValidationError as exc:
        # No context: it may hold the validator's exception object, not JSON.
        detail = exc.errors(include_url=False, include_input=False, include_context=False)
        raise RefusedError(
            json_reply(422, {"error": "payload does not match the schema", "detail": detail})
        ) from None
    except ValueError as exc:  # valid, but pydantic cannot dump it (nested too deeply)
        raise RefusedError(error_reply(400, f"body cannot be accepted: {exc}")) from None


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
    async for chunk in request.content.iter_chunked(CHUNK):
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError
        chunks.append(chunk)
    return b"".join(chunks)
