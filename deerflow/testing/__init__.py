"""Helpers for testing workflows against real parts: a Kafka-protocol broker, AWS stand-ins and
``deerflow worker`` processes."""

from deerflow.testing.processes import WorkerProcesses
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
    "WorkerProcesses",
    "accepts_connections",
    "free_port",
    "start_moto",
    "start_service",
    "start_tansu",
]
