"""Helpers for the tests that run ``deerflow serve`` as a user does: a subprocess, its lines,
HTTP requests to it."""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.connectors.conftest import ROOT

__all__ = ["DEERFLOW_SERVE", "ROOT", "TASK", "Serving", "failed_start", "get", "up", "write_app"]

DEERFLOW_SERVE = [sys.executable, "-m", "deerflow", "serve"]
TASK = """

@workflow.task(id="take")
def take(context):
    return None
"""


def write_app(tmp_path: Path, workflow: str, *triggers: str) -> Path:
    """``app.py`` whose one-task workflow ``workflow`` has ``triggers`` (source text, e.g.
    ``"KafkaEvent(topic='t')"``)."""
    app = tmp_path / "app.py"
    app.write_text(
        "from deerflow import Workflow\n"
        "from deerflow.events import KafkaEvent, S3Event, WebhookEvent\n"
        f"workflow = Workflow(name={workflow!r})\n"
        + "".join(f"workflow.add_trigger({t})\n" for t in triggers)
        + TASK
    )
    return app


class Serving:
    """``deerflow serve`` in a subprocess; its stdout lines arrive on a queue."""

    def __init__(self, args: list[str], env: dict[str, str], stderr: Path) -> None:
        self.stderr = stderr
        with stderr.open("wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "deerflow", "serve", *args],
                stdout=subprocess.PIPE,
                stderr=err,
                env=env,
                cwd=ROOT,
            )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.decode().rstrip("\n"))

    def line(self, starting: str, within: float = 40) -> str:
        """The next stdout line starting with ``starting`` (fails after ``within`` s)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                continue
            self.seen.append(line)
            if line.startswith(starting):
                return line
        self.process.kill()
        pytest.fail(f"no line {starting!r}; stdout: {self.seen}; stderr: {self.errors()}")

    def errors(self) -> str:
        return self.stderr.read_text(errors="replace")

    def interrupt(self) -> int:
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=30)
        finally:
            if self.process.poll() is None:
                self.process.kill()

    def rest(self) -> list[str]:
        """Every stdout line not read yet (after the process ended)."""
        time.sleep(0.2)
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return self.seen


def get(url: str, key: str | None = None) -> tuple[int, str, str]:
    """Status, content type and body of a GET (with ``X-API-Key: key``)."""
    request = urllib.request.Request(url, headers={"X-API-Key": key} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, reply.headers["Content-Type"], reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def up(url: str) -> bool:
    try:
        return get(url)[0] == 200
    except urllib.error.URLError:
        return False


def failed_start(args: list[str], env: dict[str, str], within: float = 60) -> str:
    """Run ``deerflow serve ARGS`` expecting it not to start: its one error line."""
    done = subprocess.run(
        [sys.executable, "-m", "deerflow", "serve", *args, "--port", "0"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=within,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if not re.match(r"\d{4}-\d\d-\d\d ", line)]
    assert len(errors) == 1 and errors[0].startswith("error: "), done.stderr  # log lines aside
    return errors[0]
