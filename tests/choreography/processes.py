"""Subprocesses for the cross-process tests: ``deerflow worker`` and Faust workers.

The processes are :class:`deerflow.testing.WorkerProcesses`, run in the log folder: whatever a
child writes to its working directory stays there.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from deerflow.testing import WorkerProcesses


class Processes(WorkerProcesses):
    """Child processes sharing one environment; each logs to a file of its own."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        super().__init__(log_dir, env, cwd=log_dir)

    def start(self, args: Sequence[str]) -> subprocess.Popen[bytes]:
        """``python ARGS...``."""
        return self.spawn("proc", [sys.executable, *args])

    def worker(self, app: Path, store: str) -> subprocess.Popen[bytes]:
        """``deerflow worker APP --store STORE``."""
        return self.start_worker(app, store=store, concurrency=4)

    def stop_all(self) -> None:
        """SIGTERM every child, kill those still running after 20 s."""
        self.stop(timeout=20)


def child_env(**extra: str) -> dict[str, str]:
    """This process's environment plus ``extra``, with the repository importable."""
    root = str(Path(__file__).resolve().parents[2])
    return dict(os.environ, PYTHONPATH=root, **extra)
