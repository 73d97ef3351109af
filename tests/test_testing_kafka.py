"""deerflow.testing's brokers: the readiness probe, the pinned version, the jar cache."""

from __future__ import annotations

import pytest

from deerflow.testing import free_port
from deerflow.testing.apache_kafka import POM, answers_metadata, jar_cache, kafka_version


@pytest.mark.kafka
def test_the_session_broker_answers_metadata_and_a_closed_port_does_not(
    kafka_bootstrap: str,
) -> None:
    assert answers_metadata(int(kafka_bootstrap.rsplit(":", 1)[1]))
    assert not answers_metadata(free_port())


def test_the_pom_pins_one_kafka_4_version_and_the_jar_cache_is_named_after_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    version = kafka_version()
    assert version.startswith("4.") and POM.read_text().count("${kafka.version}") == 2
    monkeypatch.delenv("DEERFLOW_KAFKA_JARS", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert jar_cache() == tmp_path / "deerflow" / f"kafka-{version}"
    monkeypatch.setenv("DEERFLOW_KAFKA_JARS", str(tmp_path / "jars"))
    assert jar_cache() == tmp_path / "jars"
