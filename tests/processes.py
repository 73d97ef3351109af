"""Worker subprocesses for crash tests: start ``deerflow worker`` processes, kill them."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


class Workers:
    """``deerflow worker`` subprocesses sharing one store and one environment."""

    def __init__(self, store: str, env: dict[str, str], log_dir: Path) -> None:
        self.store, self.env, self.log_dir = store, env, log_dir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, app: str | Path, concurrency: int = 8) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"worker-{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "deerflow", "worker", str(app), "--store", self.store,
             "--concurrency", str(concurrency)],
            env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        return proc

    def logs(self) -> str:
        """Every worker's output, for failure messages."""
        parts = []
        for path in sorted(self.log_dir.glob("worker-*.log")):
            parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts)

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture
def workers(store: str, tmp_path: Path, monkeypatch) -> Iterator[Workers]:
    """Worker processes on the test's store (not memory: it dies with its process)."""
    if store.startswith("memory"):
        pytest.skip("an in-memory store does not outlive its process")
    yield from worker_pool(store, tmp_path, monkeypatch)


@pytest.fixture
def kafka_workers(kafka_url: str, tmp_path: Path, monkeypatch) -> Iterator[Workers]:
    """Worker processes on Kafka, with a topic prefix of their own."""
    monkeypatch.setenv("DEERFLOW_PREFIX", f"dur{os.getpid()}{time.monotonic_ns()}")
    yield from worker_pool(kafka_url, tmp_path, monkeypatch)


def worker_pool(store: str, tmp_path: Path, monkeypatch) -> Iterator[Workers]:
    env = dict(os.environ, SINK_DB=str(tmp_path / "sink.db"), HOLD_FILE=str(tmp_path / "hold"),
               STARTED_FILE=str(tmp_path / "started"), PYTHONPATH=str(Path.cwd()))
    for key in ("SINK_DB", "HOLD_FILE", "STARTED_FILE"):
        monkeypatch.setenv(key, env[key])
    pool = Workers(store, env, tmp_path)
    yield pool
    pool.stop_all()


async def wait_for_file(path: Path, timeout: float, pool: Workers | None = None) -> None:
    """Wait until ``path`` exists; on timeout, fail showing the workers' logs."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            logs = pool.logs() if pool is not None else ""
            pytest.fail(f"{path} did not appear in {timeout}s\n{logs}")
        await asyncio.sleep(0.05)
