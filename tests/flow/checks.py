"""What the flow tests read from the history: when each run held its slot, and in what order."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

from deerflow import Engine, RunHandle
from deerflow.core import history as h
from deerflow.flow import FlowReleased, RunAdmitted, RunQueued
from tests.logs import history


async def intervals(engine: Engine) -> dict[str, list[tuple[float, float, str]]]:
    """Per gate key, (first task started, last task finished, run id) of each admitted run.

    A run's tasks run after its admission and end before its release, so no two runs whose
    intervals overlap can have held the key's slots apart.
    """
    events = await history(engine)
    keys = {e.run_id: e.key for e in events if isinstance(e, RunQueued)}
    spans: dict[str, list[float]] = {}
    for e in events:
        if isinstance(e, h.TaskCompleted) and e.run_id in keys:
            span = spans.setdefault(e.run_id, [float("inf"), 0.0])
            span[0] = min(span[0], e.started_at or e.ts)
            span[1] = max(span[1], e.ts)
    found: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    for run_id, (start, end) in spans.items():
        found[keys[run_id]].append((start, end, run_id))
    return found


def most_at_once(spans: list[tuple[float, float, str]]) -> int:
    """The most runs whose intervals overlap at one moment."""
    edges = sorted([(s, 1) for s, _, _ in spans] + [(e, -1) for _, e, _ in spans])
    most = current = 0
    for _, step in edges:
        current += step
        most = max(most, current)
    return most


async def admitted_order(engine: Engine) -> list[str]:
    """Run ids in the order their admissions were appended (one history partition's order
    when all runs share one; else by time)."""
    events = await history(engine)
    admitted = [e for e in events if isinstance(e, RunAdmitted)]
    return [e.run_id for e in sorted(admitted, key=lambda e: e.ts)]


async def released(engine: Engine) -> set[str]:
    """Runs that recorded their release."""
    return {e.run_id for e in await history(engine) if isinstance(e, FlowReleased)}


async def until_status(run: RunHandle, status: str, timeout: float = 60) -> None:
    """Wait until ``run`` shows ``status``."""
    deadline = time.monotonic() + timeout
    while (await run.status()).status != status:
        assert time.monotonic() < deadline, f"run {run.run_id} never {status}"
        await asyncio.sleep(0.05)
