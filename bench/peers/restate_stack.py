"""Restate for scenario f: ``restate-server`` and the benchmark's deployment, on free ports.

The server is the one npm ships (``npm install --prefix bench/.restate
@restatedev/restate-server``: a native binary inside the package, no Node.js at run time);
the deployment is :mod:`bench.peers.restate_app` under Hypercorn (``pip install restate-sdk
hypercorn``). :class:`RestateStack` starts both once per benchmark run, registers the
deployment with the admin API and invokes handlers through the ingress over HTTP, each
invocation waiting for its result as a client of Restate would.

The server runs its development defaults (one node, 24 partitions, its log and state in
RocksDB with WAL fsync left on) with its data under the run's scratch directory; only ports,
logging, telemetry and the shutdown grace are set.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiohttp

from bench.processes import ROOT, ProcessPool, child_env
from deerflow.testing.services import ServiceUnavailable, accepts_connections, free_port

NPM_INSTALL = "npm install --prefix bench/.restate @restatedev/restate-server"
PIP_INSTALL = "pip install restate-sdk hypercorn"
LOCAL = ROOT / "bench" / ".restate" / "node_modules"
SERVICE = "DeerflowBench"
START_ATTEMPTS = 3
START_TIMEOUT = 60.0


def find_server() -> str | None:
    """``$RESTATE_SERVER``, else ``restate-server`` on PATH, else the one under bench/.restate.

    Under bench/.restate the native binary of the platform package comes before npm's Node.js
    wrapper (``.bin/restate-server``), so a kill reaches the server itself.
    """
    given = os.environ.get("RESTATE_SERVER")
    if given:
        return given if os.access(given, os.X_OK) else None
    on_path = shutil.which("restate-server")
    if on_path:
        return on_path
    native = sorted(LOCAL.glob("@restatedev/restate-server-*/bin/restate-server"))
    for candidate in [*native, LOCAL / ".bin" / "restate-server"]:
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def missing() -> str | None:
    """Why Restate cannot run here (with the install command), or ``None`` if it can."""
    if os.environ.get("RESTATE_SERVER") and find_server() is None:
        return f"$RESTATE_SERVER={os.environ['RESTATE_SERVER']} is not an executable"
    if find_server() is None:
        return f"restate-server not found on PATH or in bench/.restate ({NPM_INSTALL})"
    for module, package in (("restate", "restate-sdk"), ("hypercorn", "hypercorn")):
        if importlib.util.find_spec(module) is None:
            return f"{package} is not installed ({PIP_INSTALL})"
    return None


class RestateStack:
    """``restate-server`` plus the deployment, started on entry and stopped on exit.

    Args:
        workdir: the server's data and both processes' logs go under it.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.pool = ProcessPool(workdir / "logs-restate", child_env())
        self.admin = self.ingress = ""
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        # No connection limit (aiohttp's is 100): every invocation of a round is in flight.
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=300), connector=aiohttp.TCPConnector(limit=0)
        )
        try:
            await self._start_server()
            await self._start_deployment()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop the deployment and the server (SIGTERM, then kill after 15 s)."""
        if self._session is not None:
            await self._session.close()
            self._session = None
        await asyncio.to_thread(self.pool.stop)

    @property
    def session(self) -> aiohttp.ClientSession:
        """The HTTP session to the server's admin API and ingress."""
        assert self._session is not None, "use RestateStack as `async with`"
        return self._session

    async def invoke(self, handler: str, argument: Any) -> Any:
        """Call ``DeerflowBench/<handler>`` through the ingress and return its JSON result."""
        async with self.session.post(
            f"{self.ingress}/{SERVICE}/{handler}",
            data=json.dumps(argument),
            headers={"content-type": "application/json"},
        ) as reply:
            body = await reply.read()
            if reply.status != 200:
                raise RuntimeError(f"Restate {handler}: HTTP {reply.status}: {body[:300]!r}")
            return json.loads(body)

    # -- start-up ----------------------------------------------------------------------------

    async def _start_server(self) -> None:
        server = find_server()
        if server is None:
            raise ServiceUnavailable(f"restate-server not found ({NPM_INSTALL})")
        data = self.workdir / "restate-data"
        for _ in range(START_ATTEMPTS):  # another process may take a free port first: retry
            shutil.rmtree(data, ignore_errors=True)  # a node's ports are part of its metadata
            admin, ingress, fabric = free_port(), free_port(), free_port()
            proc = self.pool.spawn(
                "restate-server",
                [
                    server,
                    "--base-dir",
                    str(data),
                    "--node-name",
                    "bench",
                    "--no-logo",
                    "--listen-mode",
                    "tcp",
                ],
                env={
                    "RESTATE_ADMIN__BIND_ADDRESS": f"127.0.0.1:{admin}",
                    "RESTATE_INGRESS__BIND_ADDRESS": f"127.0.0.1:{ingress}",
                    "RESTATE_BIND_ADDRESS": f"127.0.0.1:{fabric}",
                    "RESTATE_DISABLE_TELEMETRY": "true",
                    "RESTATE_LOG_FILTER": "warn",
                    "RESTATE_LOG_DISABLE_ANSI_CODES": "true",
                    "RESTATE_SHUTDOWN_TIMEOUT": "5s",
                },
            )
            self.admin, self.ingress = f"http://127.0.0.1:{admin}", f"http://127.0.0.1:{ingress}"
            if await self._healthy(
                proc.poll, [f"{self.admin}/health", f"{self.ingress}/restate/health"]
            ):
                return
            await asyncio.to_thread(self.pool.stop)
        raise ServiceUnavailable(f"restate-server did not start:\n{self.pool.logs(1500)}")

    async def _healthy(self, exited: Callable[[], int | None], urls: list[str]) -> bool:
        deadline = time.monotonic() + START_TIMEOUT
        while exited() is None and time.monotonic() < deadline:
            try:
                statuses = []
                for url in urls:
                    async with self.session.get(url) as reply:
                        statuses.append(reply.status)
                if all(status == 200 for status in statuses):
                    return True
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        return False

    async def _start_deployment(self) -> None:
        port = free_port()
        proc = self.pool.spawn(
            "restate-app", [sys.executable, "-m", "bench.peers.restate_app", f"127.0.0.1:{port}"]
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not await asyncio.to_thread(accepts_connections, port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise ServiceUnavailable(
                    f"the Restate deployment did not start:\n{self.pool.logs(1500)}"
                )
            await asyncio.sleep(0.1)
        async with self.session.post(
            f"{self.admin}/deployments", json={"uri": f"http://127.0.0.1:{port}"}
        ) as reply:
            if reply.status not in (200, 201):
                raise ServiceUnavailable(
                    f"Restate refused the deployment: HTTP {reply.status}: "
                    f"{(await reply.text())[:500]}"
                )
        await self._first_call()

    async def _first_call(self) -> None:
        # The ingress learns of a new deployment a moment after the admin API answers.
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                answer = await self.invoke("chain", 1)
                break
            except (RuntimeError, aiohttp.ClientError) as exc:
                if time.monotonic() > deadline:
                    raise ServiceUnavailable(
                        f"Restate did not serve {SERVICE}: {exc}\n{self.pool.logs(1500)}"
                    ) from exc
            await asyncio.sleep(0.1)
        if answer != 1:
            raise ServiceUnavailable(f"Restate's chain(1) answered {answer!r}, not 1")
