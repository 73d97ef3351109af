"""Local services for the benchmark: Tansu, Apache Kafka and moto_server (from
:mod:`deerflow.testing`) and
redis-server, on free loopback ports. A service that cannot start raises
:class:`ServiceUnavailable`, so a scenario can report ``skipped: <reason>`` and the run goes on.
"""

from __future__ import annotations

import shutil

from deerflow.testing.apache_kafka import start_apache_kafka
from deerflow.testing.services import (
    Service,
    ServiceUnavailable,
    accepts_connections,
    start_moto,
    start_service,
    start_tansu,
)

__all__ = [
    "Service",
    "ServiceUnavailable",
    "start_apache_kafka",
    "start_moto",
    "start_redis",
    "start_tansu",
]


def start_redis() -> Service:
    """redis-server (Debian package ``redis-server``) without persistence, loopback only."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServiceUnavailable("redis-server not installed (apt-get install -y redis-server)")
    return start_service(
        "redis-server",
        lambda port: [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        accepts_connections,
    )
