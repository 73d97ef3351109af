"""``deerflow worker`` subprocesses, for testing workflows against real worker processes.

:class:`WorkerProcesses` starts ``python -m deerflow worker APP --store STORE`` processes (or
any other command), each writing its output to a log file of its own; it kills one with SIGKILL
for crash tests and stops them all with SIGTERM (a worker drains its attempts and leaves its
consumer groups), killing stragglers. A test drives the workers from a client engine that
neither orchestrates nor works::

    store = f"sqlite:///{tmp_path / 'events.db'}"
    with WorkerProcesses(tmp_path / "logs", store=store) as workers:
        victim = workers.start_worker("app.py")
        async with Engine(store, [wf], orchestrate=False, work=False) as client:
            handle = await client.start(wf)
            await workers.wait_serving()
            workers.kill(victim)  # SIGKILL: no draining, no goodbye
            workers.start_worker("app.py")  # picks up the run where the history says
            result = await handle.result(timeout=60)
        assert result.ok, workers.logs()

The store must outlive each process, so it is an SQLite file (one machine) or Kafka, never
``memory://``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

#: What ``deerflow worker`` prints (to stderr) once its engine has started.
READY_LINE = "worker on "

StrPath = str | os.PathLike[str]
Process = subprocess.Popen[bytes]


@dataclass(frozen=True)
class _Child:
    proc: Process
    log: Path
    worker: bool

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class WorkerProcesses:
    """Subprocesses (``deerflow worker`` ones or any command), each logging to a file.

    A context manager (``with`` or ``async with``) that stops every process on exit.

    Args:
        log_dir: where each process's output goes, as ``<name>-<n>.log`` (created if missing).
        env: the processes' environment; this process's environment if omitted. It is read
            at each start, so changing :attr:`env` affects the processes started after.
        store: the event-log URL of :meth:`start_worker` when it is given none.
        cwd: the processes' working directory; this process's if omitted.

    Attributes:
        procs: the processes started since the last :meth:`stop`, less those :meth:`kill`
            ended, in the order they started.
    """

    def __init__(
        self,
        log_dir: StrPath,
        env: Mapping[str, str] | None = None,
        *,
        store: str | None = None,
        cwd: StrPath | None = None,
    ) -> None:
        self.log_dir = Path(log_dir)
        self.env: dict[str, str] = dict(os.environ if env is None else env)
        self.store = store
        self.cwd = cwd
        self.procs: list[Process] = []
        self._children: list[_Child] = []  # every process ever started, for logs()
        self.log_dir.mkdir(parents=True, exist_ok=True)

    def spawn(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
    ) -> Process:
        """Start ``argv``, its stdout and stderr going to ``<log_dir>/<name>-<n>.log``.

        Args:
            name: names the log file (``n`` counts every process this object started).
            argv: the command and its arguments.
            env: variables added to :attr:`env` for this process only.

        Returns:
            The running process.
        """
        command = list(argv)
        path = self.log_dir / f"{name}-{len(self._children)}.log"
        # The child writes through its own copy of the descriptor: ours can close at once.
        with path.open("wb") as log:
            proc = subprocess.Popen(
                command,
                env={**self.env, **(env or {})},
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        worker = command[1:4] == ["-m", "deerflow", "worker"]  # serving() watches these
        self._children.append(_Child(proc, path, worker))
        self.procs.append(proc)
        return proc

    def start_worker(
        self,
        app: StrPath,
        *,
        store: str | None = None,
        concurrency: int | None = None,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> Process:
        """Start ``deerflow worker APP --store STORE [--concurrency N] [ARGS...]``.

        Args:
            app: the ``FILE.py`` (or ``FILE.py:NAME``) defining the workflows.
            store: the event-log URL; the one given to the constructor if omitted.
            concurrency: task attempts run at once; the CLI's default if omitted.
            args: further options, such as ``["--no-eager"]``.
            env: variables added to :attr:`env` for this process only.

        Returns:
            The running process (it serves once :meth:`wait_serving` says so).

        Raises:
            ValueError: no store was given, or it is ``memory://`` (which no other process sees).
        """
        url = store or self.store
        if url is None:
            raise ValueError("no store: pass store= to start_worker() or WorkerProcesses()")
        if url.startswith("memory:"):
            raise ValueError(f"{url}: an in-memory log lives in one process; use sqlite or kafka")
        argv = [sys.executable, "-m", "deerflow", "worker", os.fspath(app), "--store", url]
        if concurrency is not None:
            argv += ["--concurrency", str(concurrency)]
        return self.spawn("worker", [*argv, *args], env=env)

    def start_workers(
        self,
        app: StrPath,
        count: int,
        *,
        store: str | None = None,
        concurrency: int | None = None,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> list[Process]:
        """Start ``count`` workers, as :meth:`start_worker` does one."""
        return [
            self.start_worker(app, store=store, concurrency=concurrency, args=args, env=env)
            for _ in range(count)
        ]

    def running(self) -> list[Process]:
        """The processes of :attr:`procs` still running."""
        return [proc for proc in self.procs if proc.poll() is None]

    def alive(self) -> bool:
        """Whether any process was started and every one of :attr:`procs` still runs."""
        return bool(self.procs) and all(proc.poll() is None for proc in self.procs)

    def kill(self, proc: Process | None = None, timeout: float = 10.0) -> Process:
        """SIGKILL ``proc`` (the first running one if omitted), as a crash would end it.

        The process is waited for and dropped from :attr:`procs`; its log stays in :meth:`logs`.

        Raises:
            RuntimeError: ``proc`` is omitted and no process is running.
        """
        if proc is None:
            running = self.running()
            if not running:
                raise RuntimeError(f"no process is running\n{self.logs()}")
            proc = running[0]
        proc.kill()
        proc.wait(timeout=timeout)
        if proc in self.procs:
            self.procs.remove(proc)
        return proc

    def logs(self, chars: int = 4000) -> str:
        """The last ``chars`` characters of every process's log, for assertion messages."""
        return "\n".join(
            f"--- {child.log.name} (pid {child.proc.pid}, exit "
            f"{child.proc.poll()})\n{child.text()[-chars:]}"
            for child in self._children
        )

    def serving(self) -> int:
        """How many running workers have started their engine (printed :data:`READY_LINE`)."""
        return sum(
            1
            for child in self._serving_candidates()
            if child.proc.poll() is None and READY_LINE in child.text()
        )

    async def wait_serving(self, count: int | None = None, timeout: float = 60.0) -> None:
        """Wait until ``count`` workers (every running one if omitted) serve.

        Raises:
            RuntimeError: a worker exited meanwhile (the message holds the logs).
            TimeoutError: they did not serve within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            candidates = self._serving_candidates()
            exited = [c.proc for c in candidates if c.proc.poll() is not None]
            if exited:
                raise RuntimeError(
                    f"worker {exited[0].pid} exited with {exited[0].returncode}\n{self.logs()}"
                )
            want = len(candidates) if count is None else count
            if self.serving() >= want:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{want} workers did not serve within {timeout}s\n{self.logs()}")
            await asyncio.sleep(0.05)

    def _serving_candidates(self) -> list[_Child]:
        return [c for c in self._children if c.worker and c.proc in self.procs]

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM every process, wait ``timeout`` seconds in all, then kill the stragglers.

        Idempotent; the logs stay readable afterwards.
        """
        for proc in self.running():
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Waiting for a draining worker must not block the event loop other tasks run on.
        await asyncio.to_thread(self.stop)
