"""Subprocesses for the cross-process tests: ``deerflow worker`` and Faust workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path


class Processes:
    """Child processes sharing one environment; each logs to a file of its own."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env, self.log_dir = env, log_dir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, args: Sequence[str]) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"proc-{len(self.procs)}.log").open("wb")
        # In the log folder: whatever a child writes to its working directory stays there.
        proc = subprocess.Popen([sys.executable, *args], env=self.env, stdout=log,
                                stderr=subprocess.STDOUT, cwd=self.log_dir)
        self.procs.append(proc)
        return proc

    def worker(self, app: Path, store: str) -> subprocess.Popen[bytes]:
        """``deerflow worker APP --store STORE``."""
        return self.start(["-m", "deerflow", "worker", str(app), "--store", store,
                           "--concurrency", "4"])

    def logs(self) -> str:
        """Every child's output, for assertion messages."""
        return "\n".join(path.read_text(errors="replace")[-3000:]
                         for path in sorted(self.log_dir.glob("proc-*.log")))

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def child_env(**extra: str) -> dict[str, str]:
    """This process's environment plus ``extra``, with the repository importable."""
    root = str(Path(__file__).resolve().parents[2])
    return dict(os.environ, PYTHONPATH=root, **extra)
