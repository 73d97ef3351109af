"""Subprocesses of the benchmark: ``deerflow worker`` processes and the relay baseline's members.

Each pool starts its processes once per configuration and stops them by their own pid
(SIGTERM, then kill), so measured iterations never include interpreter start-up or group joins.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

ROOT = Path(__file__).resolve().parent.parent
ENGINE_APP = Path(__file__).resolve().parent / "apps" / "engine_app.py"


def child_env(**extra: str) -> dict[str, str]:
    """This environment, with the repository on ``PYTHONPATH`` (apps import ``bench``)."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


class ProcessPool:
    """Subprocesses started from argument lists, logging into ``log_dir``.

    Args:
        log_dir: where each process's output goes (``<name>-<n>.log``).
        env: their environment.
    """

    def __init__(self, log_dir: Path, env: dict[str, str]) -> None:
        self.log_dir = log_dir
        self.env = env
        self.procs: list[subprocess.Popen[bytes]] = []
        self._logs: list[IO[bytes]] = []
        log_dir.mkdir(parents=True, exist_ok=True)

    def spawn(self, name: str, argv: Sequence[str]) -> subprocess.Popen[bytes]:
        """Start ``argv`` with output to a log file of its own."""
        log = (self.log_dir / f"{name}-{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen(list(argv), env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        self._logs.append(log)
        return proc

    def alive(self) -> bool:
        """Whether every process is still running."""
        return all(proc.poll() is None for proc in self.procs)

    def logs(self) -> str:
        """The tail of every log, for error messages."""
        parts = [f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                 for p in sorted(self.log_dir.glob("*.log"))]
        return "\n".join(parts)

    def stop(self) -> None:
        """SIGTERM every process (they drain and leave their groups), kill stragglers."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in self._logs:
            log.close()
        self.procs.clear()
        self._logs.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def start_workers(pool: ProcessPool, store: str, count: int, concurrency: int,
                  app: Path = ENGINE_APP) -> None:
    """``count`` ``deerflow worker APP --store STORE --concurrency N`` processes."""
    for _ in range(count):
        pool.spawn("worker", [sys.executable, "-m", "deerflow", "worker", str(app), "--store",
                              store, "--concurrency", str(concurrency)])
