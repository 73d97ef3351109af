"""Helpers for testing workflows against real parts: Kafka brokers (Tansu and Apache Kafka),
AWS stand-ins and ``deerflow worker`` processes."""

from deerflow.testing.apache_kafka import ApacheKafka, start_apache_kafka
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
    "ApacheKafka",
    "Service",
    "ServiceUnavailable",
    "WorkerProcesses",
    "accepts_connections",
    "free_port",
    "start_apache_kafka",
    "start_moto",
    "start_service",
    "start_tansu",
]
