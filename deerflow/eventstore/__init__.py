"""Domain events over the event log, and the event log's historical import path.

:class:`EventStore` keeps domain events on any :class:`~deerflow.log.EventLog`: publish, read a
stream, replay, subscribe as a consumer group, fold an aggregate (with snapshots and optimistic
concurrency), project.

The log itself (:func:`open_log`, :class:`EventLog` and its three backends) lives in
:mod:`deerflow.log`; its names stay importable from here, as do the modules
``deerflow.eventstore.base``, ``.memory``, ``.sqlite`` and ``.kafka``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import deerflow.log as _log
from deerflow.eventstore._store import EventStore
from deerflow.eventstore._store_core import Aggregate
from deerflow.eventstore._store_model import StoredEvent
from deerflow.eventstore._store_subscription import Projection, Subscription
from deerflow.log import (
    AssignmentListener,
    EventLog,
    GroupConsumer,
    Headers,
    LogReader,
    MemoryEventLog,
    Message,
    Record,
    SqliteEventLog,
    StartFrom,
    TopicPartition,
    murmur2,
    open_log,
    partition_for,
)

if TYPE_CHECKING:
    from deerflow.log.kafka import KafkaEventLog

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


def __getattr__(name: str) -> Any:
    # KafkaEventLog as deerflow.log gives it: imported on first use (no kafka extra needed).
    if name == "KafkaEventLog":
        return _log.KafkaEventLog
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
