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
    """Per gate key, (admitted, ended, run id) of each admitted run, from its history.

    The admission is the gate's ``RunAdmitted`` (stamped with the time of the record that
    freed the slot or queued the run) and the end the run's ``FlowReleased`` (recorded with its
    terminal event): what the limit bounds is the runs admitted and not ended.
    """
    events = await history(engine)
    keys = {e.run_id: e.key for e in events if isinstance(e, RunQueued)}
    admitted = {e.run_id: e.ts for e in events if isinstance(e, RunAdmitted)}
    ended = {e.run_id: e.ts for e in events if isinstance(e, FlowReleased)}
    found: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    for run_id, start in admitted.items():
        found[keys[run_id]].append((start, ended.get(run_id, float("inf")), run_id))
    return found


async def task_spans(engine: Engine) -> dict[str, tuple[float, float]]:
    """Per run, when the attempt its history kept (its first completion) ran."""
    spans: dict[str, tuple[float, float]] = {}
    for e in await history(engine):
        if isinstance(e, h.TaskCompleted) and e.run_id not in spans:
            spans[e.run_id] = (e.started_at or e.ts, e.ts)
    return spans


def most_at_once(spans: list[tuple[float, float, str]]) -> int:
    """The most runs whose intervals overlap at one moment (one ending as another starts, at
    the same time, does not overlap it)."""
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


async def until_admitted(engine: Engine, run: RunHandle, timeout: float = 60) -> None:
    """Wait until ``run`` recorded that it holds its slot."""
    deadline = time.monotonic() + timeout
    while not any(isinstance(e, RunAdmitted) for e in await history(engine, run.run_id)):
        assert time.monotonic() < deadline, f"run {run.run_id} never admitted"
        await asyncio.sleep(0.05)
