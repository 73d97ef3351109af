"""Real services for the tests: a Kafka broker (Tansu or Apache Kafka) and moto_server (AWS).

They come from :mod:`deerflow.testing`; each starts on a free loopback port and is stopped at
the end of the session. ``DEERFLOW_KAFKA_BROKER`` chooses the broker the Kafka tests run on:
``tansu`` (the default, ready in milliseconds) or ``apache`` (Apache Kafka from Maven Central
jars, ready in seconds). ``DEERFLOW_KAFKA_BOOTSTRAP=host:port`` names a running broker instead:
with ``DEERFLOW_KAFKA_BROKER`` also set, one of those two kinds (an Apache Kafka with
:data:`deerflow.testing.apache_kafka.TEST_SETTINGS`), otherwise any real Kafka (``kafka``),
which gets Kafka's default group timings. A service that cannot start skips its tests locally
but fails them on CI (env ``CI`` set), so a broken CI image is noticed instead of silently
testing less.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from typing import NoReturn, TypeVar

import pytest

from deerflow import testing
from deerflow.testing import ApacheKafka, Service, ServiceUnavailable, free_port

__all__ = [
    "KAFKA_BROKERS",
    "Service",
    "broken_on_apache_kafka",
    "free_port",
    "kafka_broker",
    "real_kafka_only",
    "start_apache_kafka",
    "start_kafka",
    "start_moto",
    "start_tansu",
    "unavailable",
    "unique_name",
]

#: Values of ``DEERFLOW_KAFKA_BROKER``: the brokers the suite starts itself.
KAFKA_BROKERS = ("tansu", "apache")

S = TypeVar("S", bound=Service)


def unique_name(prefix: str) -> str:
    """A topic or group name no other test uses, so tests can share one broker."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def unavailable(reason: str) -> NoReturn:
    """Skip locally, fail on CI."""
    if os.environ.get("CI"):
        pytest.fail(f"service unavailable on CI: {reason}")
    pytest.skip(reason)


def started(start: Callable[[], S]) -> S:
    """``start()``, or skip (fail on CI) when the service is unavailable."""
    try:
        return start()
    except ServiceUnavailable as exc:
        unavailable(str(exc))


def start_tansu() -> Service:
    """Tansu with in-memory storage; ``address`` is its ``host:port``."""
    return started(testing.start_tansu)


def kafka_broker() -> str:
    """The Kafka tests' broker: ``tansu``, ``apache`` or, for a given bootstrap, ``kafka``."""
    chosen = os.environ.get("DEERFLOW_KAFKA_BROKER", "").strip().lower()
    if chosen and chosen not in KAFKA_BROKERS:
        raise pytest.UsageError(
            f"DEERFLOW_KAFKA_BROKER={chosen!r}: choose one of {', '.join(KAFKA_BROKERS)}"
        )
    if os.environ.get("DEERFLOW_KAFKA_BOOTSTRAP"):
        return chosen or "kafka"
    return chosen or "tansu"


def real_kafka_only(reason: str) -> None:
    """Skip the calling test on Tansu, which lacks what ``reason`` names."""
    if kafka_broker() == "tansu":
        pytest.skip(f"Tansu {reason}; runs on Apache Kafka (DEERFLOW_KAFKA_BROKER=apache)")


def broken_on_apache_kafka(reason: str) -> pytest.MarkDecorator:
    """Expect the test to fail on the Apache Kafka pass, for the engine defect ``reason``
    names; it still runs there (an unexpected pass is reported, not failed)."""
    return pytest.mark.xfail(
        kafka_broker() == "apache", reason=f"on Apache Kafka: {reason}", strict=False
    )


def start_apache_kafka() -> ApacheKafka:
    """A single-node Apache Kafka (KRaft) from the Maven Central jars ``kafka/pom.xml`` pins."""
    return started(testing.start_apache_kafka)


def start_kafka() -> Service:
    """The broker :func:`kafka_broker` names (not for a given bootstrap)."""
    return start_apache_kafka() if kafka_broker() == "apache" else start_tansu()


def start_moto() -> Service:
    """moto_server from this virtualenv; ``address`` is its ``host:port``."""
    return started(testing.start_moto)
