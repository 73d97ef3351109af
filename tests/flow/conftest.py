"""The flow-control suite runs on the engine suite's stores: memory, an SQLite file and Kafka."""

from tests.engine.conftest import store

__all__ = ["store"]
