"""The one start/stop implementation of everything that runs a loop in the background.

The orchestrator, the worker, the event-handler runners and the polling trigger sources each
own one loop task. :class:`BackgroundService` is how they start it, stop it and report its
death, so that each of them codes only what it opens, what its loop does and what it closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import ClassVar

from deerflow._lifecycle import Lifecycle

log = logging.getLogger("deerflow.runtime")


class BackgroundService(Lifecycle):
    """A service that owns one loop task.

    Contract:

    - :meth:`start` is idempotent: once started, it does nothing. It calls :meth:`_open`
      (connect, join a group; if that raises, nothing was started) and then runs
      :meth:`_run` as the service's one loop task.
    - :meth:`stop` is idempotent and safe before :meth:`start`. It sets :attr:`stopping`,
      then cancels the loop task, or, for a service with ``graceful_stop``, lets the loop
      return by itself (it watches :attr:`stopping`, e.g. to finish the batch in hand), awaits
      it, and calls :meth:`_close`.
    - An exception that escapes the loop is logged when it happens and kept in
      :attr:`failure`; :meth:`stop` still closes the service, then raises it.
    - ``async with service:`` starts and stops it.
    """

    #: whether stop lets the loop return by itself instead of cancelling it
    graceful_stop: ClassVar[bool] = False

    def __init__(self) -> None:
        #: set by :meth:`stop`; the loop watches it
        self.stopping = asyncio.Event()
        #: what the loop died of, if it died
        self.failure: BaseException | None = None
        self._loop_task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        """Whether the loop task runs (started, not stopped, not dead)."""
        return self._loop_task is not None and not self._loop_task.done()

    def loop_name(self) -> str:
        """The loop task's name (in task dumps and logs)."""
        return f"deerflow-{type(self).__name__}"

    async def start(self) -> None:
        """Open the service and start its loop; idempotent."""
        if self._loop_task is not None:
            return
        self.stopping.clear()
        self.failure = None
        await self._open()
        self._loop_task = asyncio.create_task(self._guarded(), name=self.loop_name())

    async def stop(self) -> None:
        """Stop the loop and close the service; idempotent, safe before :meth:`start`."""
        self.stopping.set()
        task, self._loop_task = self._loop_task, None
        if task is not None:
            if not self.graceful_stop:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._close()
        failure, self.failure = self.failure, None
        if failure is not None:
            raise failure

    async def _guarded(self) -> None:
        try:
            await self._run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("%s: the loop failed", self.loop_name(), exc_info=True)
            self.failure = exc

    async def _open(self) -> None:
        """Acquire what the loop needs (default: nothing)."""

    async def _run(self) -> None:
        """The loop; it returns once :attr:`stopping` is set (or is cancelled)."""
        raise NotImplementedError

    async def _close(self) -> None:
        """Release what :meth:`_open` and the loop acquired (default: nothing)."""
