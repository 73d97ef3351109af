"""Subprocesses of the benchmark: ``deerflow worker`` processes and the relay baseline's members.

Each pool starts its processes once per configuration and stops them by their own pid
(SIGTERM, then kill), so measured iterations never include interpreter start-up or group joins.
The pool is :class:`deerflow.testing.WorkerProcesses`, which the tests use too.
"""

from __future__ import annotations

import os
from pathlib import Path

from deerflow.testing import WorkerProcesses
from deerflow.testing.services import cpu_seconds

ROOT = Path(__file__).resolve().parent.parent
ENGINE_APP = Path(__file__).resolve().parent / "apps" / "engine_app.py"

__all__ = ["ProcessPool", "child_env", "cpu_seconds", "start_workers"]

#: ``ProcessPool(log_dir, env)``: ``spawn(name, argv)``, ``alive()``, ``logs()``, ``stop()``.
ProcessPool = WorkerProcesses


def child_env(**extra: str) -> dict[str, str]:
    """This environment, with the repository on ``PYTHONPATH`` (apps import ``bench``)."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


def start_workers(
    pool: ProcessPool, store: str, count: int, concurrency: int, app: Path = ENGINE_APP
) -> None:
    """``count`` ``deerflow worker APP --store STORE --concurrency N`` processes."""
    pool.start_workers(app, count, store=store, concurrency=concurrency)
