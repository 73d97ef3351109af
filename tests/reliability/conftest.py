"""Fixtures of the reliability suite: seeds that replay, sizes, a topic prefix, the sink.

Every randomised test takes ``rng`` (a :class:`random.Random`); its seed is printed, so a
failure shows it, and ``RELIABILITY_SEED=<seed>`` replays the same choices.
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engine.apps.sink import Sink
from tests.processes import Workers, worker_pool

APPS = Path(__file__).parent / "apps"


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> int:
    """The test's random seed: ``RELIABILITY_SEED`` or a fresh one, printed for replays."""
    value = int(os.environ.get("RELIABILITY_SEED") or random.SystemRandom().randrange(2**32))
    print(f"\n{request.node.nodeid}: seed={value} (replay: RELIABILITY_SEED={value})")
    request.node.user_properties.append(("seed", value))
    return value


@pytest.fixture
def rng(seed: int) -> random.Random:
    """A random generator seeded with :func:`seed`."""
    return random.Random(seed)


@pytest.fixture(autouse=True)
def prefix(monkeypatch: pytest.MonkeyPatch) -> str:
    """A topic prefix of this test's own; no credentials or limits leak in from outside."""
    name = f"rel{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("DEERFLOW_PREFIX", name)
    for var in (
        "DEERFLOW_API_KEYS",
        "DEERFLOW_WEBHOOK_SECRETS",
        "DEERFLOW_CONFIG",
        "DEERFLOW_MAX_RUNNING_RUNS",
    ):
        monkeypatch.delenv(var, raising=False)
    return name


@pytest.fixture
def sink(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Sink:
    """The idempotent sink (effects by idempotency key + every attempt), via ``SINK_DB``."""
    path = tmp_path / "sink.db"
    monkeypatch.setenv("SINK_DB", str(path))
    return Sink(path)


@pytest.fixture
def sqlite_pool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workers]:
    """``deerflow worker`` processes on an SQLite file of this test."""
    yield from worker_pool(f"sqlite:///{tmp_path / 'events.db'}", tmp_path, monkeypatch)


@pytest.fixture
def kafka_pool(
    kafka_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Workers]:
    """``deerflow worker`` processes on the session's Kafka broker."""
    yield from worker_pool(kafka_url, tmp_path, monkeypatch)
