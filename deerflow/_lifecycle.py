"""``start()``/``stop()`` and ``async with``: the lifecycle of everything deerflow connects.

Event logs and readers, the event store, the runtime's background services and the trigger
sources all share it, so that ``async with`` means one thing everywhere.
"""

from __future__ import annotations

import abc
from types import TracebackType
from typing import Self


class Lifecycle(abc.ABC):
    """``start()``/``stop()`` plus ``async with``; ``stop()`` is idempotent, safe before start."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Connect; idempotent."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Release everything; idempotent and safe before :meth:`start`."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
