"""The JSON answers of deerflow's HTTP servers (webhooks, the API, the startup check):
bodies, ``{"error": ...}`` refusals, and the exception that carries a refusal out of a
webhook request's handling."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

import deerflow._codec as _codec

__all__ = ["RefusedError", "error_reply", "json_reply", "unauthorized"]


def json_reply(status: int, body: Any, headers: Mapping[str, str] | None = None) -> web.Response:
    """``body`` as a JSON response (the webhooks', the API's and the startup check's)."""
    return web.Response(
        status=status, body=_codec.dumps(body), headers=headers, content_type="application/json"
    )


def error_reply(status: int, message: str, **headers: str) -> web.Response:
    """``{"error": message}`` with ``status``."""
    return json_reply(status, {"error": message}, headers)


def unauthorized() -> web.Response:
    """401 for a request without an accepted API key, naming the scheme to use."""
    return error_reply(401, "missing or invalid API key", **{"WWW-Authenticate": "Bearer"})


class RefusedError(Exception):
    """A request refused part-way; ``response`` says why."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response
