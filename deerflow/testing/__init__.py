"""Helpers for testing workflows against real parts: a Kafka-protocol broker and AWS stand-ins."""

from deerflow.testing.services import (
    Service,
    ServiceUnavailable,
    accepts_connections,
    free_port,
    start_moto,
    start_service,
    start_tansu,
)

__all__ = [
    "Service",
    "ServiceUnavailable",
    "accepts_connections",
    "free_port",
    "start_moto",
    "start_service",
    "start_tansu",
]
