"""aiokafka, imported once with a helpful error, and the small conversions around it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from deerflow.errors import EventStoreError, MissingDependency
from deerflow.log.base import Record, TopicPartition

try:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka import TopicPartition as KafkaTopicPartition
    from aiokafka.abc import ConsumerRebalanceListener
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import (
        CommitFailedError,
        IllegalStateError,
        KafkaError,
        TopicAlreadyExistsError,
        for_code,
    )
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependency(
        "the kafka:// event log needs aiokafka: pip install 'deerflow[kafka]'"
    ) from exc

__all__ = [
    "AIOKafkaAdminClient",
    "AIOKafkaConsumer",
    "AIOKafkaProducer",
    "CommitFailedError",
    "ConsumerRebalanceListener",
    "IllegalStateError",
    "KafkaError",
    "NewTopic",
    "TopicAlreadyExistsError",
    "connect",
    "failure",
    "for_code",
    "ours",
    "record_from",
    "theirs",
]

logger = logging.getLogger(__name__)


def ours(tp: Any) -> TopicPartition:
    """An aiokafka ``TopicPartition`` as deerflow's."""
    return TopicPartition(tp.topic, tp.partition)


def theirs(tp: TopicPartition) -> Any:
    """A deerflow ``TopicPartition`` as aiokafka's."""
    return KafkaTopicPartition(tp.topic, tp.partition)


def record_from(message: Any) -> Record:
    """An aiokafka ``ConsumerRecord`` as a :class:`Record`."""
    return Record(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=None if message.key is None else message.key.decode("utf-8", "replace"),
        value=b"" if message.value is None else message.value,
        headers=tuple((name, bytes(value)) for name, value in message.headers or ()),
        timestamp_ms=message.timestamp,
    )


def failure(url: str, doing: str, exc: BaseException) -> EventStoreError:
    """An :class:`EventStoreError` saying what failed where, keeping aiokafka's retriable flag."""
    retriable = bool(getattr(exc, "retriable", True))
    return EventStoreError(f"{doing} Kafka at {url}: {exc!r}", retriable=retriable)


async def connect(
    url: str,
    limit: float,
    start: Awaitable[None],
    stop: Callable[[], Awaitable[None]],
    *,
    waiting_for: str = "no answer",
) -> None:
    """Await a client's ``start()`` for at most ``limit`` s; on failure stop it, say where.

    ``waiting_for`` names what a timeout means (a group consumer's start includes its join).
    """
    try:
        await asyncio.wait_for(start, limit)
    except asyncio.CancelledError:  # e.g. a server stopped while its groups join: close it
        await _stop_failed(stop)
        raise
    except (KafkaError, OSError, TimeoutError) as exc:
        await _stop_failed(stop)
        detail = f"{waiting_for} within {limit} s" if isinstance(exc, TimeoutError) else str(exc)
        raise EventStoreError(f"cannot reach Kafka at {url}: {detail}") from exc


#: stops of clients that failed to start and did not stop at once (see _stop_failed)
_stopping: set[asyncio.Task[None]] = set()


async def _stop_failed(stop: Callable[[], Awaitable[None]]) -> None:
    """Stop a client that failed to start, waiting a second at most.

    A consumer whose group join is held by the broker (a member gone without leaving) cannot
    stop before that join ends, up to the gone member's session timeout: the caller gets its
    error now and the stop finishes in the background.
    """

    async def stopping() -> None:
        try:
            await stop()
        except Exception:  # the start's failure is the one worth reporting
            logger.debug("stopping a client that failed to start", exc_info=True)

    task = asyncio.create_task(stopping(), name="deerflow-kafka-failed-start")
    _stopping.add(task)
    task.add_done_callback(_stopping.discard)
    await asyncio.wait({task}, timeout=1.0)
