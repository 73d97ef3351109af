"""Importable from here too: it lives in :mod:`deerflow.observability.logs`."""

from deerflow.observability.logs import (
    FORMAT_ENV,
    LEVELS,
    LIBRARIES,
    JsonFormatter,
    RunContextFilter,
    configure_logging,
)

__all__ = [
    "FORMAT_ENV",
    "LEVELS",
    "LIBRARIES",
    "JsonFormatter",
    "RunContextFilter",
    "configure_logging",
]
