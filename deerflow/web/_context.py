"""What every dashboard and API handler needs: the engine and the metrics, kept on the app."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from deerflow.engine import Engine
from deerflow.metrics import EngineMetrics


@dataclass
class WebContext:
    """The engine served, its metrics, where the dashboard lives, and whether it needs a key."""

    engine: Engine
    metrics: EngineMetrics
    ui_prefix: str = "/ui"
    signed_in: bool = False
    #: Seconds a client may take to send a request body to the API (else 408).
    body_timeout: float = 30.0
    #: Backfills running in this process, by schedule (one at a time for each), and the
    #: last result of each (a :class:`~deerflow.connectors.schedule.BackfillResult` or an
    #: error): bounded by the schedules loaded.
    backfills: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    backfilled: dict[str, Any] = field(default_factory=dict)


CONTEXT: web.AppKey[WebContext] = web.AppKey("deerflow_web", WebContext)


def context(request: web.Request) -> WebContext:
    """The context of the (sub-)application handling ``request``."""
    return request.app[CONTEXT]
