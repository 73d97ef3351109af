"""Workflows the flow-control tests share (also loaded by ``deerflow worker`` processes)."""

from __future__ import annotations

import asyncio
from typing import Any

from deerflow import Concurrency, RateLimit, Workflow


def limited(
    name: str = "limited", *, limit: int = 2, seconds: float = 0.2, **options: Any
) -> Workflow:
    """One task that takes ``seconds``; at most ``limit`` runs per ``params.customer``."""
    wf = Workflow(name, concurrency=Concurrency(limit=limit, key="params.customer"), **options)

    @wf.task(id="work")
    async def work(context):
        await asyncio.sleep(context.params.get("seconds", seconds))
        return context.params.get("n")

    return wf


def rated(name: str = "rated", *, on_excess: str = "delay", **limits: Any) -> Workflow:
    """One quick task; a rate limit per ``params.customer``."""
    limit = RateLimit(key="params.customer", on_excess=on_excess, **limits)  # type: ignore[arg-type]
    wf = Workflow(name, rate_limit=limit)

    @wf.task(id="work")
    def work(context):
        return context.params.get("n")

    return wf


#: what the worker-process tests load: three runs at most per customer, each a second long
shared = limited("shared", limit=3, seconds=1.0)
