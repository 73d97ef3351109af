"""What a serving process answers while it starts: 503 "starting", naming what it waits for.

``deerflow serve`` listens before its consumer groups have joined (a join takes seconds on
Kafka), so that clients get an answer instead of a refused connection. Until every service is
up, :class:`Startup`'s middleware answers every request with 503 and ``Retry-After``: JSON
``{"error": "starting", "waiting_for": [...]}`` for the API, webhooks and metrics, a small page
that reloads itself for the dashboard. :func:`stop_on_signals` is how every serving process
(``deerflow serve``, ``deerflow ui``, ``deerflow worker``) learns to stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from deerflow.connectors import ApiKeys
from deerflow.connectors.integration import json_reply, presented_key
from deerflow.runtime.plugins import Service

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
RETRY_AFTER = "2"


def stop_on_signals(stop: asyncio.Event) -> None:
    """Set ``stop`` on SIGINT or SIGTERM: a serving process then stops as it would by itself.

    Call it inside the running loop; where the loop cannot take signal handlers (Windows), it
    does nothing.
    """
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)


class Startup:
    """The things a server still waits for; empty once it is ready.

    Args:
        keys: when API keys are configured, only requests presenting one (``X-API-Key`` or
            ``Authorization: Bearer``) are told what the server waits for (names of groups
            and topics); others get the bare 503.
    """

    def __init__(self, keys: ApiKeys | None = None) -> None:
        self._keys = keys
        self.waiting: dict[str, None] = {}  # insertion-ordered set of labels
        self.began = time.monotonic()
        self.ready = False

    def wait_for(self, label: str) -> None:
        """Add ``label`` to what the server waits for."""
        self.waiting[label] = None

    def done(self, label: str) -> None:
        """``label`` is up."""
        self.waiting.pop(label, None)

    def finish(self) -> float:
        """Everything is up; returns the seconds the start took."""
        self.waiting.clear()
        self.ready = True
        return time.monotonic() - self.began

    def track(self, service: Service, label: str) -> Service:
        """``service``, whose start removes ``label`` from what the server waits for."""
        self.wait_for(label)
        return _Tracked(service, label, self)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Answer 503 "starting" until :meth:`finish`."""
        if self.ready:
            return await handler(request)
        told = not self._keys or self._keys.accepts(presented_key(request.headers))
        waiting = list(self.waiting) if told else []
        headers = {"Retry-After": RETRY_AFTER, "Cache-Control": "no-store"}
        if request.path.startswith("/ui") or request.path == "/":
            return web.Response(
                status=503, text=_page(waiting), content_type="text/html", headers=headers
            )
        body: dict[str, Any] = {"error": "starting"}
        if told:
            body["waiting_for"] = waiting
        return json_reply(503, body, headers)


class _Tracked:
    """A service whose successful start is reported to a :class:`Startup`."""

    def __init__(self, service: Service, label: str, startup: Startup) -> None:
        self.service = service
        self.label = label
        self._startup = startup

    async def start(self) -> None:
        await self.service.start()
        self._startup.done(self.label)

    async def stop(self) -> None:
        await self.service.stop()


def _page(waiting: list[str]) -> str:
    items = "".join(f"<li>{html.escape(label)}</li>" for label in waiting)
    listed = f"<p>Waiting for:</p><ul>{items}</ul>" if items else ""
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<meta http-equiv='refresh' content='{RETRY_AFTER}'><title>deerflow: starting</title>"
        f"</head><body><h1>deerflow is starting</h1>{listed}</body></html>"
    )
