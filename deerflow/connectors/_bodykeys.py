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
"""

from __future__ import annotations

import asyncio
from typing import Any

from deerflow.connectors._ledger import Ledger
from deerflow.runtime import Engine


def keys_topic(prefix: str) -> str:
    """The topic holding the body digest of each key a wait's webhook was sent."""
    return f"{prefix}.webhook-keys"


def first_wins(old: Any, new: Any) -> Any:
    """Keep the value recorded first (a key stays bound to its first body)."""
    return new if old is None else old


class BodyKeys:
    """The digests bound to the keys a gateway was sent; see the module docstring."""

    def __init__(self, engine: Engine) -> None:
        self.ledger = Ledger(engine.log, keys_topic(engine.topics.prefix), merge=first_wins)
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
