"""``memory://``, importable from here too: it lives in :mod:`deerflow.log.memory`."""

from deerflow.log.memory import MemoryEventLog

__all__ = ["MemoryEventLog"]
