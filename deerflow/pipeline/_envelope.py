"""What travels through a pipeline: an item's value with the source items it stands for."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class Token:
    """One item a source offered and the pipeline admitted.

    Attributes:
        origin: where it came from (topic/partition/offset, bucket/key/line), for dead letters.
        ack: told once when the item is done with, however it ended (commits its offset...).
        admitted_at: ``time.monotonic()`` when it entered, for end-to-end latency.
    """

    origin: Mapping[str, Any] | None
    ack: Callable[[], None] | None
    admitted_at: float

    def settle(self) -> None:
        """Call ``ack`` (at most once)."""
        ack, self.ack = self.ack, None
        if ack is not None:
            ack()


@dataclass(slots=True)
class Envelope:
    """A value between two stages and the tokens it carries.

    An envelope carries one token until a batch stage merges a batch into one output, which
    then carries the tokens of the whole batch: they are done when that output is.
    """

    value: Any
    key: Any
    tokens: list[Token]

    @property
    def weight(self) -> int:
        """How many source items this envelope stands for."""
        return len(self.tokens)
