"""The child :mod:`bench.instructions` counts: ``python bench/_steps.py engine|core N``.

Runs in the checkout being measured (its ``deerflow`` and ``bench.workloads``), through the
public API only where it can, so that older checkouts run it too.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import sys
from pathlib import Path
from typing import Any

import deerflow
from bench.workloads import CHAIN_STEPS, make_chain
from deerflow import Engine


async def engine_chains(runs: int) -> None:
    """``runs`` chains at once, twice, on an in-process engine over ``memory://``."""
    logging.getLogger("deerflow").setLevel(logging.ERROR)
    wf = make_chain()
    async with Engine("memory://", [wf], partitions=1) as engine:
        for _ in range(2):
            handles = await asyncio.gather(*(engine.start(wf) for _ in range(runs)))
            results = await asyncio.gather(*(h.result(timeout=600) for h in handles))
            assert all(r.ok for r in results), [r.error for r in results if not r.ok][:1]


def _core() -> tuple[Any, Any, Any, Any]:
    """``(advance, RunState, fold, history)`` where this checkout keeps them (looked for as
    files: an installed deerflow elsewhere could answer an import of a module missing here)."""
    package = Path(deerflow.__file__).parent
    core = (package / "core" / "decide.py").exists()
    where = (
        ("core.decide", "core.state", "core.history")
        if core
        else ("engine._decide", "engine._state", "engine._history")
    )
    decide, state, history = (importlib.import_module(f"deerflow.{m}") for m in where)
    return decide.advance, state.RunState, state.fold, history


def core_chains(runs: int) -> None:
    """The pure fold and decide of ``runs`` chains, each task completing at once."""
    advance, run_state, fold, h = _core()
    wf = make_chain()
    for i in range(runs):
        rid = f"r{i}"
        state = run_state(run_id=rid)
        requested = h.RunRequested(
            id=f"{rid}:requested",
            run_id=rid,
            ts=1.0,
            workflow=wf.name,
            version=wf.version,
            fingerprint=wf.fingerprint(),
        )
        fold(state, requested)
        events = advance(wf, state, 1.0)
        for step in range(CHAIN_STEPS):
            scheduled = next(e for e in events if e.type == "TaskScheduled")
            ident = {"task_id": scheduled.task_id, "attempt": scheduled.attempt}
            done = h.TaskCompleted(id=f"{rid}:{step}:c", run_id=rid, ts=2.0, output=step, **ident)
            fold(state, done)
            events = advance(wf, state, 2.0)
        assert state.status == "completed", state.status


if __name__ == "__main__":
    mode, size = sys.argv[1], int(sys.argv[2])
    if mode == "engine":
        asyncio.run(engine_chains(size))
    else:
        core_chains(size)
