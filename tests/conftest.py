"""Session services (Kafka, moto) and the event log every backend-neutral test runs against."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from deerflow.eventstore import EventLog, open_log
from tests.services import start_moto, start_tansu, unique_name

# Tansu answers group joins after half the session timeout; 1 s keeps each join near 1 s
# (3 s: 2 s, and 7 s for a group's second generation). Real Kafka refuses sessions under 6 s
# by default, so a broker given through the environment keeps the library defaults.
FAST_GROUPS = "session_timeout_ms=1000&heartbeat_interval_ms=300"


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """``host:port`` of a Kafka-protocol broker: ``DEERFLOW_KAFKA_BOOTSTRAP`` or a fresh Tansu."""
    given = os.environ.get("DEERFLOW_KAFKA_BOOTSTRAP")
    if given:
        yield given
        return
    tansu = start_tansu()
    try:
        yield tansu.address
    finally:
        tansu.stop()


@pytest.fixture
def kafka_url(kafka_bootstrap: str) -> str:
    """A ``kafka://`` URL for the session broker, with quick group timings on Tansu."""
    if os.environ.get("DEERFLOW_KAFKA_BOOTSTRAP"):
        return f"kafka://{kafka_bootstrap}"
    return f"kafka://{kafka_bootstrap}?{FAST_GROUPS}"


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """``http://127.0.0.1:PORT`` of a moto_server for this session."""
    moto = start_moto()
    try:
        yield f"http://{moto.address}"
    finally:
        moto.stop()


@pytest.fixture(params=["memory", "sqlite", pytest.param("kafka", marks=pytest.mark.kafka)])
def event_log_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a fresh log on each backend in turn."""
    if request.param == "memory":
        return f"memory://{unique_name('log')}"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'events.db'}"
    return str(request.getfixturevalue("kafka_url"))


@pytest.fixture
async def event_log(event_log_url: str) -> AsyncIterator[EventLog]:
    """A started log on each backend in turn, stopped after the test."""
    log = open_log(event_log_url)
    await log.start()
    try:
        yield log
    finally:
        await log.stop()


@pytest.fixture
def topic() -> str:
    """A topic name of this test's own (tests share one broker)."""
    return unique_name("topic")


@pytest.fixture
def group() -> str:
    """A consumer group name of this test's own."""
    return unique_name("group")
