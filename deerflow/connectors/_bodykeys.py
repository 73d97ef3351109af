"""The body each ``Idempotency-Key`` of a wait's webhook was first sent with.

A run trigger's key is bound to its body by the run it names (the run records the body's
digest). A webhook that ``wait_for_event(source=...)`` names starts no run, so the digest is
kept here instead: on the ``<prefix>.webhook-keys`` topic (a
:class:`~deerflow.connectors._ledger.Ledger` shared by processes and kept across restarts),
one record per key, the first one kept. The key is recorded before its event is appended
(an append that then fails leaves the key bound to that body; sending it again is accepted).
Requests with one key are bound one after the other in a process, so of two racing there the
first recorded is the one kept, also when the topic is read again after a restart; across
processes the topic is read just before binding (two processes binding one key within that
moment may both accept).

A key is kept for :data:`KEY_WINDOW` (a gateway's ``key_window``; longer than senders retry:
Stripe retries for 3 days) after it was first sent, then forgotten: the topic is then read
from the window's start, not from its creation (see :class:`~deerflow.connectors._ledger.
Ledger`), and a key sent again after its window is bound anew, to whatever body it comes with.
On Kafka, the topic keeps records for the broker's retention (7 days by default): keep it at
least the window.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from deerflow.connectors._ledger import Ledger
from deerflow.runtime import Engine

#: seconds a key stays bound to its body after it was first sent (7 days)
KEY_WINDOW = 7 * 86_400.0


def keys_topic(prefix: str) -> str:
    """The topic holding the body digest of each key a wait's webhook was sent."""
    return f"{prefix}.webhook-keys"


def first_wins(old: Any, new: Any) -> Any:
    """Keep the value recorded first (a key stays bound to its first body)."""
    return new if old is None else old


class BodyKeys:
    """The digests bound to the keys a gateway was sent; see the module docstring.

    Args:
        engine: the engine whose log keeps the keys.
        window: seconds a key stays bound after it was first sent.
        clock: the time now, in seconds.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        window: float = KEY_WINDOW,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ledger = Ledger(
            engine.log,
            keys_topic(engine.topics.prefix),
            merge=first_wins,
            window=window,
            clock=clock,
        )
        self._engine = engine
        # Keys being bound now (at most one entry per request in flight).
        self._binding: dict[str, asyncio.Lock] = {}

    async def bind(self, key: str, digest: str) -> str:
        """Bind ``key`` to ``digest`` unless it is bound already; the digest it is bound to."""
        # read once a key is sent, stopped with the engine
        await self.ledger.started_by(self._engine.add_service)
        lock = self._binding.setdefault(key, asyncio.Lock())
        try:
            async with lock:
                await self.ledger.refresh()
                if self.ledger.get(key) is None:
                    await self.ledger.put({key: digest})
                bound: str = self.ledger.get(key) or digest
                return bound
        finally:
            if not lock.locked() and self._binding.get(key) is lock:
                del self._binding[key]  # the value is known now: a later request needs no lock
