"""Real services for the tests: Tansu (a Kafka-protocol broker) and moto_server (AWS).

They come from :mod:`deerflow.testing`; each starts on a free loopback port and is stopped at
the end of the session. A service that cannot start skips its tests locally but fails them on
CI (env ``CI`` set), so a broken CI image is noticed instead of silently testing less.
"""

from __future__ import annotations

import os
import uuid
from typing import NoReturn

import pytest

from deerflow import testing
from deerflow.testing import Service, ServiceUnavailable, free_port

__all__ = ["Service", "free_port", "start_moto", "start_tansu", "unavailable", "unique_name"]


def unique_name(prefix: str) -> str:
    """A topic or group name no other test uses, so tests can share one broker."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def unavailable(reason: str) -> NoReturn:
    """Skip locally, fail on CI."""
    if os.environ.get("CI"):
        pytest.fail(f"service unavailable on CI: {reason}")
    pytest.skip(reason)


def start_tansu() -> Service:
    """Tansu with in-memory storage; ``address`` is its ``host:port``."""
    try:
        return testing.start_tansu()
    except ServiceUnavailable as exc:
        unavailable(str(exc))


def start_moto() -> Service:
    """moto_server from this virtualenv; ``address`` is its ``host:port``."""
    try:
        return testing.start_moto()
    except ServiceUnavailable as exc:
        unavailable(str(exc))
