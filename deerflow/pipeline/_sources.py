"""Sources of finite input: an iterable or an async iterable, as ``workflow.run(input=...)``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Iterable
from typing import TYPE_CHECKING, Any

from deerflow.errors import DefinitionError
from deerflow.pipeline._io import Source

if TYPE_CHECKING:
    from deerflow.pipeline._backpressure import Intake

# A sync iterable is read on the event loop (a generator of ready values is the common case);
# yielding every so often lets the stages run while a source never has to wait.
_YIELD_EVERY = 64


class IterableSource(Source):
    """Feeds the items of an iterable or async iterable, then ends.

    A sync iterable is iterated on the event loop: if producing an item blocks on I/O, make it
    an async iterator instead.
    """

    def __init__(self, items: Iterable[Any] | AsyncIterable[Any]) -> None:
        self.items = items
        self.exhausted = False

    async def run(self, intake: Intake) -> None:
        """Offer every item; stop early when the pipeline stops."""
        if isinstance(self.items, AsyncIterable):
            async for item in self.items:
                if not await intake.offer(item) and intake.stopping.is_set():
                    return
        else:
            for count, item in enumerate(self.items, 1):
                if not await intake.offer(item) and intake.stopping.is_set():
                    return
                if count % _YIELD_EVERY == 0:
                    await asyncio.sleep(0)
        self.exhausted = True


def as_source(value: Any, *, where: str) -> Source:
    """A :class:`Source` for ``value``: itself, or an :class:`IterableSource` around it."""
    if isinstance(value, Source):
        return value
    if isinstance(value, str | bytes | dict) or not isinstance(value, Iterable | AsyncIterable):
        raise DefinitionError(
            f"{where}: a pipeline source is an iterable, an async iterable or a Source"
            f" (KafkaSource, S3Source), not {type(value).__name__}"
        )
    return IterableSource(value)
