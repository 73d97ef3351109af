"""The event log: the only source of truth of deerflow, below everything else.

Open one by URL with :func:`open_log`:

* ``memory://`` or ``memory://name`` — in this process only (tests, :mod:`deerflow.testing`);
* ``sqlite:///path.db`` — one file on one machine, no broker;
* ``kafka://host:9092[,host2:9092]`` — many workers on many machines (needs the ``kafka`` extra).

The interface all three implement is in :mod:`deerflow.log.base`. This package imports nothing
of deerflow but :mod:`deerflow.errors` and :mod:`deerflow._codec`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from deerflow.errors import EventStoreError
from deerflow.log.base import (
    AssignmentListener,
    EventLog,
    GroupConsumer,
    Headers,
    LogReader,
    Message,
    Record,
    StartFrom,
    TopicPartition,
    murmur2,
    partition_for,
)
from deerflow.log.memory import MemoryEventLog
from deerflow.log.sqlite import SqliteEventLog

if TYPE_CHECKING:
    from deerflow.log.kafka import KafkaEventLog

__all__ = [
    "AssignmentListener",
    "EventLog",
    "GroupConsumer",
    "Headers",
    "KafkaEventLog",
    "LogReader",
    "MemoryEventLog",
    "Message",
    "Record",
    "SqliteEventLog",
    "StartFrom",
    "TopicPartition",
    "murmur2",
    "open_log",
    "partition_for",
]


def open_log(url: str, **options: Any) -> EventLog:
    """The event log a URL names, not started yet.

    Args:
        url: ``memory://[name]``, ``sqlite:///path.db`` or ``kafka://host:port[,host:port]``,
            each with optional ``?key=value`` options.
        **options: keyword options of the chosen class (they win over the URL's).

    Raises:
        EventStoreError: the scheme is unknown.
        MissingDependency: ``kafka://`` without aiokafka installed.
    """
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        return MemoryEventLog(url, **options)
    if scheme == "sqlite":
        return SqliteEventLog(url, **options)
    if scheme == "kafka":
        from deerflow.log.kafka import KafkaEventLog

        return KafkaEventLog(url, **options)
    raise EventStoreError(
        f"unknown event log URL {url!r}: use memory://, sqlite:///path.db or kafka://host:port",
        retriable=False,
    )


def __getattr__(name: str) -> Any:
    # KafkaEventLog is imported on first use, so deerflow works without the kafka extra.
    if name == "KafkaEventLog":
        from deerflow.log.kafka import KafkaEventLog

        return KafkaEventLog
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
