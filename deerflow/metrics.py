"""Importable from here too: it lives in :mod:`deerflow.observability.metrics`."""

from deerflow.observability.metrics import (
    CONTENT_TYPE,
    DURATION_BUCKETS,
    EngineMetrics,
)

__all__ = [
    "CONTENT_TYPE",
    "DURATION_BUCKETS",
    "EngineMetrics",
]
