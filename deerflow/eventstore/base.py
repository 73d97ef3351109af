"""The event log's interface, importable from here too: it lives in :mod:`deerflow.log.base`."""

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

__all__ = [
    "AssignmentListener",
    "EventLog",
    "GroupConsumer",
    "Headers",
    "LogReader",
    "Message",
    "Record",
    "StartFrom",
    "TopicPartition",
    "murmur2",
    "partition_for",
]
