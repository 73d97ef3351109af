"""The HTTP triggers' answers: JSON bodies, ``{"error": ...}`` refusals, and the exception
that carries a refusal out of a request's handling."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

import deerflow._codec as _codec

__all__ = ["RefusedError", "error_reply", "json_reply"]


def json_reply(status: int, body: Any, headers: Mapping[str, str] | None = None) -> web.Response:
    """``body`` as a JSON response (the webhooks', the API's and the startup check's)."""
    return web.Response(
        status=status, body=_codec.dumps(body), headers=headers, content_type="application/json"
    )


def error_reply(status: int, message: str, **headers: str) -> web.Response:
    """``{"error": message}`` with ``status``."""
    return json_reply(status, {"error": message}, headers)


class RefusedError(Exception):
    """A request refused part-way; ``response`` says why."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response
