"""Workflows the flow-control tests share (also loaded by ``deerflow worker`` processes)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
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


#: what the task-priority process test loads: each attempt appends "pid label" to
#: $STARTED_FILE as it starts, then waits while $HOLD_FILE exists
prioritised = Workflow("prioritised")


@prioritised.task(id="work")
def _prioritised_work(context):
    with Path(os.environ["STARTED_FILE"]).open("a") as started:
        started.write(f"{os.getpid()} {context.params['label']}\n")
    while Path(os.environ["HOLD_FILE"]).exists():
        time.sleep(0.05)
    return context.params["label"]
