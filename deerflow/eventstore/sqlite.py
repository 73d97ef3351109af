"""``sqlite:///path.db``, importable from here too: it lives in :mod:`deerflow.log.sqlite`."""

from deerflow.log.sqlite import SqliteEventLog

__all__ = ["SqliteEventLog"]
