"""What every scenario shares: sizes, the one Kafka broker, the one SQLite file, the rows.

The broker is Tansu, or Apache Kafka with ``DEERFLOW_KAFKA_BROKER=apache`` (both started on
first use, as the tests start them), or the one ``DEERFLOW_KAFKA_BOOTSTRAP`` names (see
:func:`kafka_broker`).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from bench.harness import Comparison, Row, Settings, run_comparison
from bench.services import (
    Service,
    ServiceUnavailable,
    start_apache_kafka,
    start_moto,
    start_redis,
    start_tansu,
)

log = logging.getLogger("bench")

# Tansu answers group joins after half the session timeout (as in tests/conftest.py); the
# Apache Kafka of deerflow.testing accepts 1 s sessions too.
FAST_GROUPS = "session_timeout_ms=1000&heartbeat_interval_ms=300"
BROKERS = {"tansu": start_tansu, "apache": start_apache_kafka}


def kafka_broker() -> str:
    """The benchmark's broker: ``tansu`` or ``apache`` (``DEERFLOW_KAFKA_BROKER``), started
    here unless ``DEERFLOW_KAFKA_BOOTSTRAP`` names one of that kind; ``kafka`` for a given
    broker of no stated kind (any real Kafka: default group timings), as in the tests."""
    chosen = os.environ.get("DEERFLOW_KAFKA_BROKER", "").strip().lower()
    if chosen and chosen not in BROKERS:
        raise SystemExit(f"DEERFLOW_KAFKA_BROKER={chosen!r}: choose one of {', '.join(BROKERS)}")
    if os.environ.get("DEERFLOW_KAFKA_BOOTSTRAP"):
        return chosen or "kafka"
    return chosen or "tansu"


@dataclass(frozen=True)
class Sizes:
    """Workload sizes of a run (``--quick`` shrinks every one of them)."""

    chain_runs: int = 50  # a: concurrent runs of the 10-step chain
    chain_steps: int = 10
    overhead_sweep: tuple[tuple[int, int], ...] = ((1, 1), (4, 1), (1, 2), (4, 2))
    sqlite_partitions: tuple[int, ...] = (1, 4)
    limit_chains: tuple[int, ...] = (500, 5000)  # a: chains in flight at once, the limit rows
    limit_kafka: tuple[int, int] = (4, 1)  # a: partitions, worker processes of those rows
    short_runs: int = 10_000  # a: one-step runs started at once
    latency_rate: float = 50.0  # b: triggers per second, open loop
    latency_count: int = 200
    s3_rate: float = 5.0
    s3_count: int = 30
    schedule_ticks: int = 10  # b: ticks of a 1 s schedule per iteration
    fanout_sizes: tuple[int, ...] = (10, 100, 1000, 10_000)
    fanout_pending: int = 10_000  # c: children held pending for the memory measurement
    mr_chunks: int = 8  # d: corpus chunks (map partitions)
    mr_words: int = 400_000  # words per chunk (CPU-bound map)
    io_maps: int = 64  # d: I/O-bound maps, each sleeping io_delay
    io_concurrency: int = 16
    io_delay: float = 0.2
    bp_buffer: int = 1000  # e: pipeline bound; fed 10x as much
    bp_sink_rate: float = 2000.0
    bp_payload: int = 10_000
    peer_runs: int = 20  # f: chains per peer iteration
    peer_fanout: int = 1000
    peer_io_maps: int = 64
    waiting_runs: int = 100_000  # g: runs waiting for an event while the latency is measured


QUICK = Sizes(
    chain_runs=5,
    overhead_sweep=((1, 1),),
    sqlite_partitions=(1,),
    limit_chains=(20,),
    short_runs=50,
    latency_rate=50.0,
    latency_count=20,
    s3_rate=6.0,
    s3_count=3,
    schedule_ticks=3,
    fanout_sizes=(10, 100),
    fanout_pending=500,
    mr_chunks=2,
    mr_words=20_000,
    io_maps=8,
    io_concurrency=4,
    io_delay=0.05,
    bp_buffer=50,
    bp_sink_rate=2000.0,
    bp_payload=1000,
    peer_runs=3,
    peer_fanout=20,
    peer_io_maps=8,
    waiting_runs=200,
)


class BenchContext:
    """Shared state of one benchmark run.

    Args:
        quick: the CI smoke size.
        settings: pairs and warm-ups per comparison.
        workdir: scratch directory (the SQLite file, corpora, worker logs).
    """

    def __init__(self, *, quick: bool, settings: Settings, workdir: Path | None = None) -> None:
        self.quick = quick
        self.sizes = QUICK if quick else Sizes()
        self.settings = settings
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="deerflow-bench-")
        self.workdir = workdir or Path(self._tmp.name)  # type: ignore[union-attr]
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.sqlite_path = self.workdir / "bench.db"
        self.rows: list[Row] = []
        self._kafka: Service | None = None
        self._moto: Service | None = None
        self._redis: Service | None = None

    # -- services ----------------------------------------------------------------------------

    def kafka_bootstrap(self) -> str:
        """``host:port`` of the run's broker (``DEERFLOW_KAFKA_BOOTSTRAP``, or one started)."""
        given = os.environ.get("DEERFLOW_KAFKA_BOOTSTRAP")
        if given:
            return given
        if self._kafka is None:
            self._kafka = BROKERS[kafka_broker()]()
            log.info("%s on %s", self._kafka.name, self._kafka.address)
        return self._kafka.address

    @property
    def kafka_service(self) -> Service | None:
        """The broker this run started (for its CPU time), or ``None`` if it was given one."""
        return self._kafka

    def kafka_url_with(self, **options: str) -> str:
        """:meth:`kafka_url` with more query options, such as ``client="confluent"``."""
        url = self.kafka_url()
        extra = "&".join(f"{name}={value}" for name, value in options.items())
        return url + ("&" if "?" in url else "?") + extra if extra else url

    def kafka_url(self) -> str:
        """The engine's ``kafka://`` URL, with quick group timings on Tansu and on the Apache
        Kafka of deerflow.testing."""
        if kafka_broker() == "kafka":
            return f"kafka://{self.kafka_bootstrap()}"
        return f"kafka://{self.kafka_bootstrap()}?{FAST_GROUPS}"

    @property
    def sqlite_url(self) -> str:
        """The run's one SQLite file."""
        return f"sqlite:///{self.sqlite_path}"

    def moto_endpoint(self) -> str:
        """``http://host:port`` of a moto_server started on first use."""
        if self._moto is None:
            self._moto = start_moto()
        return f"http://{self._moto.address}"

    def redis_address(self) -> str:
        """``host:port`` of a redis-server started on first use."""
        if self._redis is None:
            self._redis = start_redis()
        return self._redis.address

    @staticmethod
    def prefix(name: str) -> str:
        """A topic prefix of one comparison's own (one broker and file serve the whole run)."""
        return f"b{name}{uuid.uuid4().hex[:8]}"

    # -- running -----------------------------------------------------------------------------

    async def compare(self, comparison: Comparison, *, on_broker: bool = False) -> list[Row]:
        """Run one comparison and keep its rows.

        ``on_broker``: the comparison runs on the Kafka broker; when this run started it, the
        broker's own CPU use over the comparison (both sides, warm-up included) is noted.
        """
        broker = self._kafka if on_broker else None
        cpu, wall = (broker.cpu_seconds(), time.monotonic()) if broker else (0.0, 0.0)
        rows = await run_comparison(comparison, self.settings)
        if broker is not None:
            share = (broker.cpu_seconds() - cpu) / (time.monotonic() - wall)
            for row in rows:
                row.note += f"; {broker.name} itself used {share:.0%} of one core meanwhile"
        self.rows.extend(rows)
        return rows

    def add(self, rows: list[Row]) -> None:
        """Keep rows a scenario made itself (skipped or pending ones)."""
        self.rows.extend(rows)

    def close(self) -> None:
        """Stop every service this run started; remove the scratch directory."""
        for service in (self._redis, self._moto, self._kafka):
            if service is not None:
                service.stop()
        if self._tmp is not None:
            self._tmp.cleanup()


__all__ = ["BenchContext", "ServiceUnavailable", "Sizes", "kafka_broker"]
