"""Stores the large-payload suite runs on: an SQLite file and Kafka (Tansu or real)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest


@pytest.fixture(params=["sqlite", pytest.param("kafka", marks=pytest.mark.kafka)])
def store(request: pytest.FixtureRequest, tmp_path, monkeypatch) -> Iterator[str]:
    """An event-log URL; topics get a per-test prefix so tests on one broker stay apart."""
    monkeypatch.setenv("DEERFLOW_PREFIX", f"t{uuid.uuid4().hex[:10]}")
    monkeypatch.delenv("DEERFLOW_BLOBS", raising=False)
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'events.db'}"
    else:
        yield str(request.getfixturevalue("kafka_url"))
