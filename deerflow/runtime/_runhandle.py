"""A started run's handle, and fresh run ids."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from deerflow.runtime._results import RunResult

if TYPE_CHECKING:
    from deerflow.runtime._engine import Engine

__all__ = ["RunHandle", "new_run_id"]


def new_run_id() -> str:
    """A fresh random run id."""
    return uuid.uuid4().hex


class RunHandle:
    """A started run: await its result, or look at it."""

    def __init__(self, engine: Engine, run_id: str, workflow: str) -> None:
        self._engine = engine
        self.run_id = run_id
        self.workflow = workflow

    async def result(self, timeout: float | None = None) -> RunResult:
        """Wait until the run ends and return it; ``TimeoutError`` if it does not in time."""
        return await self._engine.wait(self.run_id, timeout=timeout)

    async def status(self) -> RunResult:
        """The run as it is now."""
        return await self._engine.get_run(self.run_id)

    async def signal(self, name: str, data: Any = None, *, signal_id: str | None = None) -> str:
        """Send the signal ``name`` to the run (see :meth:`Engine.signal`); its id."""
        return await self._engine.signal(self.run_id, name, data, signal_id=signal_id)

    async def cancel(self, reason: str = "cancelled") -> None:
        """Ask the engine to cancel the run."""
        await self._engine.cancel(self.run_id, reason=reason)

    def __repr__(self) -> str:
        return f"RunHandle(run_id={self.run_id!r}, workflow={self.workflow!r})"
