"""Dead letters of trigger sources: their ids, their log line, and one letter per input.

A letter's id is derived from the identity of the input it stands for (the trigger's name and
the source's key: topic/partition/offset, an SQS message id), so the same input dead-lettered
again, by ``deerflow triggers replay`` or by a redelivery after a crash, is recognised. The ids
written are kept on the ``<prefix>.dlq-ids`` topic (a :class:`~deerflow.connectors._ledger.Ledger`
shared by the engine's sources and by other processes), read only once a source has a letter
to write; a letter whose id is there is not written again.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING

import deerflow._codec as _codec
from deerflow.connectors._ledger import Ledger
from deerflow.log.base import Message
from deerflow.runtime import Engine

if TYPE_CHECKING:
    from deerflow.connectors.base import DeadLetter

log = logging.getLogger("deerflow.connectors")
EXCERPT = 60  # characters of an input quoted in a reason


def ids_topic(prefix: str) -> str:
    """The topic holding the ids of the dead letters written."""
    return f"{prefix}.dlq-ids"


def letter_id(trigger: str, key: str | None) -> str:
    """The id of ``trigger``'s letter for the input ``key`` (random without a key)."""
    if key is None:
        return uuid.uuid4().hex[:24]
    return hashlib.sha256(f"{trigger}\x00{key}".encode("utf-8", "surrogateescape")).hexdigest()[:24]


def excerpt(value: bytes, limit: int = EXCERPT) -> str:
    """The start of an input as a quoted string, with its size when it is cut."""
    text = repr(value[:limit].decode("utf-8", "replace"))
    return text if len(value) <= limit else f"{text}... ({len(value)} bytes)"


class LetterIds:
    """The ids of the letters written through one engine; see the module docstring."""

    _by_engine: weakref.WeakKeyDictionary[Engine, LetterIds] = weakref.WeakKeyDictionary()

    def __init__(self, engine: Engine) -> None:
        self.ledger = Ledger(engine.log, ids_topic(engine.topics.prefix))
        self._engine = engine

    @classmethod
    def of(cls, engine: Engine) -> LetterIds:
        """The engine's (one per engine)."""
        ids = cls._by_engine.get(engine)
        if ids is None:
            ids = cls._by_engine[engine] = cls(engine)
        return ids

    async def fresh(self, ids: Sequence[str]) -> set[str]:
        """Those of ``ids`` not written yet (by this process or, as far as read, another)."""
        # read now (once for all sources), stopped with the engine
        await self.ledger.started_by(self._engine.add_service)
        await self.ledger.refresh()
        return {i for i in ids if self.ledger.get(i) is None}

    async def written(self, ids: Sequence[str]) -> None:
        """Record ``ids`` as written."""
        await self.ledger.put(dict.fromkeys(ids, time.time()))


def whose(letter: DeadLetter, trigger: str) -> str:
    """``workflow W, trigger T`` for log lines (a Kafka source is named by its group)."""
    workflow = letter.details.get("workflow")
    named = letter.details.get("trigger") or trigger
    return f"workflow {workflow}, trigger {named}" if workflow else f"trigger {named}"


def letter_message(engine: Engine, trigger: str, letter: DeadLetter, letter_id: str) -> Message:
    """The record of ``letter`` on the dead-letter topic, logged in one line."""
    body = {
        "id": letter_id,
        "reason": letter.reason,
        "source": letter.source,
        "trigger": trigger,
        "at": time.time(),
    }
    try:
        value = _codec.dumps({**body, **letter.details})
    except (TypeError, ValueError) as exc:  # details too deep or odd: keep the reason
        value = _codec.dumps({**body, "details_error": str(exc)})
    headers = (
        *letter.headers,
        ("deerflow-reason", letter.reason.encode()[:1000]),
        ("deerflow-trigger", trigger.encode()),
        ("deerflow-letter-id", letter_id.encode()),
    )
    log.warning(
        "%s: dead-lettering input %s: %s", whose(letter, trigger), letter.key, letter.reason
    )
    return Message(topic=engine.topics.dlq, key=letter.key, value=value, headers=headers)
