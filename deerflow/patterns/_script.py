"""Running a Python script as a dynamic task: an asyncio subprocess, never a blocked loop.

The script's output is the JSON document on the last non-empty line of its standard output.
A non-zero exit, or a last line that is not JSON, fails the task with the tail of the script's
standard error in the message. A timeout (the spec's ``config["timeout"]`` or the node's own,
which cancels the task) kills the script's whole process group.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import deerflow._codec as _codec
from deerflow.errors import NonRetryableError, TaskError

STDERR_TAIL = 2000


def resolve_script(script: str, search_path: Sequence[Path], task_id: str) -> Path:
    """``script`` as given if absolute, else the first match under ``search_path``."""
    path = Path(script).expanduser()
    candidates = [path] if path.is_absolute() else [base / path for base in search_path]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    tried = ", ".join(str(c) for c in candidates)
    raise NonRetryableError(
        f"task {task_id!r}: script {script!r} not found (tried {tried})", task_id=task_id
    )


async def run_script(
    path: Path, args: Sequence[str], *, task_id: str, env: Mapping[str, str], seconds: float | None
) -> Any:
    """Run ``python path args...``; return the JSON of its last stdout line."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(path),
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(env),
        start_new_session=True,  # its own process group, so a kill reaches its children too
    )
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), seconds)
    except TimeoutError:
        await _kill(proc)
        raise TaskError(
            f"task {task_id!r}: script {path.name} timed out after {seconds}s", task_id=task_id
        ) from None
    except BaseException:  # cancelled (the node's timeout, the run's cancel, shutdown)
        await _kill(proc)
        raise
    return parse_output(path, proc.returncode, stdout, stderr, task_id)


def parse_output(
    path: Path, returncode: int | None, stdout: bytes, stderr: bytes, task_id: str
) -> Any:
    """The task output, or :class:`TaskError` describing a failed script."""
    tail = stderr.decode("utf-8", "replace")[-STDERR_TAIL:].strip()
    if returncode != 0:
        raise TaskError(
            f"task {task_id!r}: script {path.name} exited with {returncode}: "
            f"{tail or '(no stderr)'}",
            task_id=task_id,
        )
    lines = [line for line in stdout.decode("utf-8", "replace").splitlines() if line.strip()]
    if not lines:
        raise TaskError(
            f"task {task_id!r}: script {path.name} printed nothing; print the "
            f"result as JSON on the last line (stderr: {tail or 'empty'})",
            task_id=task_id,
        )
    try:
        return _codec.loads(lines[-1])
    except ValueError:
        raise TaskError(
            f"task {task_id!r}: the last line script {path.name} printed is not "
            f"JSON: {lines[-1][:200]!r} (stderr: {tail or 'empty'})",
            task_id=task_id,
        ) from None


async def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    # Reap it, even while being cancelled, so no zombie is left behind.
    with contextlib.suppress(Exception):
        await asyncio.shield(proc.wait())
