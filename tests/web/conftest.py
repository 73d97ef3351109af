"""A served deployment for the dashboard and API tests: engine, webhook gateway and dashboard
in this process on a real port, or ``deerflow serve`` / ``deerflow ui`` as real processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

import aiohttp
import pytest

from deerflow import Engine
from deerflow.cli._loader import load_module_workflows
from deerflow.connectors import ApiKeys, WebhookGateway, sources_for
from deerflow.core.state import RunState
from deerflow.metrics import EngineMetrics
from deerflow.web import mount
from tests.services import unavailable, unique_name

ROOT = Path(__file__).resolve().parents[2]
APP = Path(__file__).parent / "apps" / "ops_app.py"


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A topic prefix and flag folder of this test's own; no keys or config from outside."""
    monkeypatch.setenv("DEERFLOW_PREFIX", unique_name("w").replace("-", ""))
    monkeypatch.setenv("DEERFLOW_TEST_FLAGS", str(tmp_path))
    for var in ("DEERFLOW_API_KEYS", "DEERFLOW_CONFIG", "DEERFLOW_STORE", "DEERFLOW_SESSION_TTL"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


@dataclass
class Deployment:
    """An engine with its gateway and dashboard, reachable at ``url``."""

    url: str
    engine: Engine
    metrics: EngineMetrics
    flags: Path
    session: aiohttp.ClientSession

    async def webhook(self, path: str = "/hooks/etl", **headers: str) -> str:
        """Trigger a run through the gateway; return its run id."""
        async with self.session.post(self.url + path, json={}, headers=headers) as reply:
            assert reply.status == 202, await reply.text()
            return str((await reply.json())["run_id"])

    async def wait(
        self, run_id: str, predicate: Any = lambda s: s.terminal, timeout: float = 30.0
    ) -> RunState:
        """The run once ``predicate(state)`` holds."""
        state = await self.engine.index.wait(run_id, predicate, timeout)
        assert state is not None, f"run {run_id} did not get there in {timeout}s"
        return state

    async def get(self, path: str, status: int = 200, **headers: str) -> Any:
        """GET ``path``; assert the status; the JSON body."""
        async with self.session.get(self.url + path, headers=headers) as reply:
            assert reply.status == status, await reply.text()
            return await reply.json()

    async def post(self, path: str, status: int = 202, body: Any = None) -> Any:
        """POST JSON to ``path``; assert the status; the JSON body."""
        async with self.session.post(self.url + path, json=body) as reply:
            assert reply.status == status, await reply.text()
            return await reply.json()


async def deploy(
    store: str,
    flags: Path,
    api_keys: list[str] | None = None,
) -> AsyncIterator[Deployment]:
    """What ``deerflow serve`` runs, in this process, on port 0."""
    workflows, _ = load_module_workflows(str(APP))
    async with Engine(store, workflows) as engine:
        gateway = WebhookGateway(engine, port=0, api_keys=ApiKeys(api_keys or []))
        metrics = mount(gateway.app, engine, api_keys=gateway.api_keys)
        for source in sources_for(engine, workflows, gateway=gateway):
            await engine.add_service(source)
        await engine.add_service(gateway)
        async with aiohttp.ClientSession() as session:
            yield Deployment(gateway.url, engine, metrics, flags, session)


@pytest.fixture
async def deployment(isolated: Path) -> AsyncIterator[Deployment]:
    """A deployment on a fresh in-memory store, without API keys."""
    async for served in deploy(f"memory://{unique_name('web')}", isolated):
        yield served


class Process:
    """``deerflow serve`` or ``deerflow ui`` as a subprocess; ``url`` once it listens."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self._log: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "deerflow", *args],
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
            cwd=ROOT,
        )
        self.url = self._wait_ready()

    def _wait_ready(self) -> str:
        found: list[str] = []

        def read() -> None:
            assert self.process.stdout is not None
            for line in self.process.stdout:
                if b"listening on " in line:
                    found.append(line.decode().rsplit(" ", 1)[1].strip())
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(timeout=40)
        if not found:
            self.stop()
            command = " ".join(cast("list[str]", self.process.args)[3:5])
            pytest.fail(f"{command} did not start:\n{self.output()}")
        return found[0]

    def output(self) -> str:
        """What the process wrote on stderr (its logs)."""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-6000:]

    def stop(self) -> None:
        """SIGTERM, then kill if it does not exit."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def process_env(flags: Path, **extra: str) -> dict[str, str]:
    """The environment of a served process: this test's prefix and flag folder."""
    return dict(os.environ, PYTHONPATH=str(ROOT), DEERFLOW_TEST_FLAGS=str(flags), **extra)


@pytest.fixture
def served(isolated: Path) -> Iterator[tuple[Process, str]]:
    """``deerflow serve`` on an SQLite store (so a ``deerflow ui`` can read it too)."""
    store = f"sqlite:///{isolated / 'served.db'}"
    with serving(APP, store, isolated) as proc:
        yield proc, store


@contextlib.contextmanager
def serving(app: Path, store: str, flags: Path, *args: str, **env: str) -> Iterator[Process]:
    """``deerflow serve APP --store STORE --port 0 ARGS`` with ``env`` added, stopped after."""
    command = ["serve", str(app), "--store", store, "--port", "0", *args]
    proc = Process(command, process_env(flags, **env))
    try:
        yield proc
    finally:
        proc.stop()


async def until(check: Any, timeout: float = 30.0, what: str = "condition") -> None:
    """Wait until the coroutine function ``check()`` returns true."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not reached within {timeout}s")
        await asyncio.sleep(0.1)


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless chromium (skipped locally when missing, a failure on CI)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed (pip install playwright)")
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        unavailable("chromium is not installed (apt-get install -y chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()
