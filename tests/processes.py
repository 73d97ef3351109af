"""Worker subprocesses for crash tests: start ``deerflow worker`` processes, kill them.

The processes are :class:`deerflow.testing.WorkerProcesses`; this module adds the fixtures and
the environment the test apps read (``SINK_DB``, ``HOLD_FILE``, ``STARTED_FILE``).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from deerflow.testing import WorkerProcesses


class Workers(WorkerProcesses):
    """``deerflow worker`` subprocesses sharing one store and one environment."""

    def __init__(self, store: str, env: dict[str, str], log_dir: Path) -> None:
        super().__init__(log_dir, env, store=store)

    def start(self, app: str | Path, concurrency: int = 8) -> subprocess.Popen[bytes]:
        """One more worker for ``app`` on the pool's store."""
        return self.start_worker(app, concurrency=concurrency)

    def stop_all(self) -> None:
        """SIGTERM every worker, kill those still running after 15 s."""
        self.stop()


@pytest.fixture
def workers(store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workers]:
    """Worker processes on the test's store (not memory: it dies with its process)."""
    if store.startswith("memory"):
        pytest.skip("an in-memory store does not outlive its process")
    yield from worker_pool(store, tmp_path, monkeypatch)


@pytest.fixture
def kafka_workers(
    kafka_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Workers]:
    """Worker processes on Kafka, with a topic prefix of their own."""
    monkeypatch.setenv("DEERFLOW_PREFIX", f"dur{os.getpid()}{time.monotonic_ns()}")
    yield from worker_pool(kafka_url, tmp_path, monkeypatch)


def worker_pool(store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workers]:
    """Workers on ``store`` logging into ``tmp_path``, with the test apps' files set here and
    in the workers' environment; stopped when the generator closes."""
    env = dict(
        os.environ,
        SINK_DB=str(tmp_path / "sink.db"),
        HOLD_FILE=str(tmp_path / "hold"),
        STARTED_FILE=str(tmp_path / "started"),
        PYTHONPATH=str(Path.cwd()),
    )
    for key in ("SINK_DB", "HOLD_FILE", "STARTED_FILE"):
        monkeypatch.setenv(key, env[key])
    with Workers(store, env, tmp_path) as pool:
        yield pool


async def wait_for_file(path: Path, timeout: float, pool: WorkerProcesses | None = None) -> None:
    """Wait until ``path`` exists; on timeout, fail showing the workers' logs."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            logs = pool.logs() if pool is not None else ""
            pytest.fail(f"{path} did not appear in {timeout}s\n{logs}")
        await asyncio.sleep(0.05)
