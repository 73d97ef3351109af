"""Run the examples as a user runs them: ``python examples/FILE.py`` or ``deerflow run ...``.

Each run is a real process in a directory of the test's; what it printed comes back with its
exit code. An exit code other than the one expected, or a process still running at its
timeout, fails the test with the command line and the tails of both outputs.
(:func:`load_example` imports an example instead, for a test that calls into it.)
"""

from __future__ import annotations

import importlib.util
import json
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
#: how long an example may take (each finishes in seconds; a loaded machine is slower)
TIMEOUT = 120.0
#: how much of each output a failure message shows, from the end (where the error is)
_TAIL = 4000


@dataclass(frozen=True)
class Ran:
    """An example process that ended: its command line, exit code and outputs."""

    command: str
    rc: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        """The lines it printed on stdout."""
        return self.stdout.splitlines()

    def json(self) -> Any:
        """Its stdout read as JSON (``deerflow run --json``)."""
        return json.loads(self.stdout)


class Started:
    """An example process running in the background, so that several run at once."""

    def __init__(self, args: list[str], cwd: Path | None) -> None:
        self.command = shlex.join(args)
        self._process = subprocess.Popen(
            args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def finish(self, *, expect: int | None = 0, timeout: float = TIMEOUT) -> Ran:
        """Wait for the process to end and return what it did; fail the test when it exits
        other than ``expect`` (``None``: any code) or runs past ``timeout`` seconds (it is
        killed then)."""
        try:
            out, err = self._process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            out, err = self._process.communicate()
            pytest.fail(f"`{self.command}` still ran after {timeout:.0f}s\n{_outputs(out, err)}")
        ran = Ran(self.command, self._process.returncode, out, err)
        if expect is not None and ran.rc != expect:
            pytest.fail(f"`{ran.command}` exited {ran.rc}, not {expect}\n{_outputs(out, err)}")
        return ran


def start_example(script: str, *args: str, cwd: Path | None = None) -> Started:
    """``python examples/<script> ARGS`` started in ``cwd``."""
    return Started([sys.executable, str(EXAMPLES / script), *args], cwd)


def run_example(
    script: str, *args: str, cwd: Path, expect: int | None = 0, timeout: float = TIMEOUT
) -> Ran:
    """``python examples/<script> ARGS`` run in ``cwd`` to its end (see :meth:`Started.finish`)."""
    return start_example(script, *args, cwd=cwd).finish(expect=expect, timeout=timeout)


def run_cli(*args: str, cwd: Path, expect: int | None = 0, timeout: float = TIMEOUT) -> Ran:
    """``deerflow ARGS`` run in ``cwd`` to its end (see :meth:`Started.finish`)."""
    return Started([sys.executable, "-m", "deerflow", *args], cwd).finish(
        expect=expect, timeout=timeout
    )


def deerflow_run(target: str, cwd: Path, *params: str) -> Any:
    """The JSON result of ``deerflow run examples/<target> --json`` with ``--param`` each of
    ``params`` (``name=value``), on a store in ``cwd``; the run must exit 0."""
    flags = [flag for param in params for flag in ("--param", param)]
    store = f"sqlite:///{cwd / 'deerflow.db'}"
    ran = run_cli("run", str(EXAMPLES / target), *flags, "--json", "--store", store, cwd=cwd)
    return ran.json()


def load_example(script: str, module: str | None = None) -> ModuleType:
    """examples/<script> imported as module ``module`` (``example_<stem>`` by default): its
    top level runs, its ``if __name__ == "__main__"`` part does not."""
    path = EXAMPLES / script
    spec = importlib.util.spec_from_file_location(module or f"example_{path.stem}", path)
    assert spec is not None and spec.loader is not None, path
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


def _outputs(stdout: str, stderr: str) -> str:
    return f"--- stdout\n{stdout[-_TAIL:]}\n--- stderr\n{stderr[-_TAIL:]}"
