"""``kafka://``, importable from here too: it lives in :mod:`deerflow.log.kafka`."""

from deerflow.log.kafka import KafkaEventLog, KafkaSettings

__all__ = ["KafkaEventLog", "KafkaSettings"]
