"""The event log: the only source of truth of deerflow.

Open one by URL with :func:`open_log`:

* ``memory://`` or ``memory://name`` — in this process only (tests, :mod:`deerflow.testing`);
* ``sqlite:///path.db`` — one file on one machine, no broker;
* ``kafka://host:9092[,host2:9092]`` — many workers on many machines (needs the ``kafka`` extra).

The interface all three implement is in :mod:`deerflow.eventstore.base`. On top of any of them,
:class:`EventStore` keeps domain events: publish, read a stream, replay, subscribe as a
consumer group, fold an aggregate (with snapshots and optimistic concurrency), project.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from deerflow.errors import EventStoreError
from deerflow.eventstore.base import (
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
from deerflow.eventstore.memory import MemoryEventLog
from deerflow.eventstore.sqlite import SqliteEventLog

if TYPE_CHECKING:
    from deerflow.eventstore.kafka import KafkaEventLog

__all__ = [
    "Aggregate",
    "AssignmentListener",
    "EventLog",
    "EventStore",
    "GroupConsumer",
    "Headers",
    "KafkaEventLog",
    "LogReader",
    "MemoryEventLog",
    "Message",
    "Projection",
    "Record",
    "SqliteEventLog",
    "StartFrom",
    "StoredEvent",
    "Subscription",
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
        from deerflow.eventstore.kafka import KafkaEventLog

        return KafkaEventLog(url, **options)
    raise EventStoreError(
        f"unknown event log URL {url!r}: use memory://, sqlite:///path.db or kafka://host:port",
        retriable=False,
    )


def __getattr__(name: str) -> Any:
    # KafkaEventLog is imported on first use, so deerflow works without the kafka extra.
    if name == "KafkaEventLog":
        from deerflow.eventstore.kafka import KafkaEventLog

        return KafkaEventLog
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# The event store (domain events over an EventLog). Imported last: it reaches back into the
# engine lazily, and the engine imports this package.
from deerflow.eventstore._store import EventStore  # noqa: E402
from deerflow.eventstore._store_core import Aggregate  # noqa: E402
from deerflow.eventstore._store_model import StoredEvent  # noqa: E402
from deerflow.eventstore._store_subscription import Projection, Subscription  # noqa: E402
