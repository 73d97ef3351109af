"""What both matching groups share: the topic, the poll loop, and commits after appends."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from deerflow.log.base import GroupConsumer, Message, Record, TopicPartition
from deerflow.runtime import BackgroundService, Engine

log = logging.getLogger("deerflow.matching")

POLL_RECORDS = 2000


def matching_topic(engine: Engine) -> str:
    """The topic both sides of a match are re-keyed into."""
    return f"{engine.topics.prefix}.matching"


async def append_and_commit(
    engine: Engine,
    consumer: GroupConsumer,
    out: list[Message],
    records: Iterable[Record],
    offsets: dict[TopicPartition, int] | None = None,
) -> None:
    """Append ``out``, then commit past ``records`` (and ``offsets``): input is committed only
    once what it caused is durable (at least once)."""
    offsets = dict(offsets or {})
    for record in records:
        offsets[record.tp] = record.offset + 1
    if offsets:
        await consumer.append_and_commit(engine.log, out, offsets)
    elif out:
        await engine.log.append(out)


class Member(BackgroundService):
    """A member of one of the matching groups: polls, handles, retries a failed round."""

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine
        self.topic = matching_topic(engine)
        self._consumer: GroupConsumer | None = None

    async def _close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                consumer = self._consumer
                if consumer is None:  # a re-subscription that failed: join again
                    await self._open()
                    continue
                await self._handle(consumer, await consumer.poll(0.5, POLL_RECORDS))
            except asyncio.CancelledError:
                raise
            except Exception:  # what it read is not committed: it comes again
                log.exception("%s: a round failed; retrying", self.loop_name())
                await asyncio.sleep(1.0)

    async def _handle(self, consumer: GroupConsumer, records: list[Record]) -> None:
        raise NotImplementedError
