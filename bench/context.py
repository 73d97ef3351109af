"""What every scenario shares: sizes, the one Tansu broker, the one SQLite file, the rows."""

from __future__ import annotations

import logging
import os
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from bench.harness import Comparison, Row, Settings, run_comparison
from bench.services import Service, ServiceUnavailable, start_moto, start_redis, start_tansu

log = logging.getLogger("bench")

# Tansu answers group joins after half the session timeout (as in tests/conftest.py).
FAST_GROUPS = "session_timeout_ms=1000&heartbeat_interval_ms=300"


@dataclass(frozen=True)
class Sizes:
    """Workload sizes of a run (``--quick`` shrinks every one of them)."""

    chain_runs: int = 50  # a: concurrent runs of the 10-step chain
    chain_steps: int = 10
    overhead_sweep: tuple[tuple[int, int], ...] = ((1, 1), (4, 1), (1, 2), (4, 2))
    sqlite_partitions: tuple[int, ...] = (1, 4)
    latency_rate: float = 50.0  # b: triggers per second, open loop
    latency_count: int = 200
    s3_rate: float = 5.0
    s3_count: int = 30
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


QUICK = Sizes(
    chain_runs=5,
    overhead_sweep=((1, 1),),
    sqlite_partitions=(1,),
    latency_rate=50.0,
    latency_count=20,
    s3_rate=6.0,
    s3_count=3,
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
        self._tansu: Service | None = None
        self._moto: Service | None = None
        self._redis: Service | None = None

    # -- services ----------------------------------------------------------------------------

    def kafka_bootstrap(self) -> str:
        """``host:port`` of the run's broker (``DEERFLOW_KAFKA_BOOTSTRAP`` or one Tansu)."""
        given = os.environ.get("DEERFLOW_KAFKA_BOOTSTRAP")
        if given:
            return given
        if self._tansu is None:
            self._tansu = start_tansu()
            log.info("Tansu on %s", self._tansu.address)
        return self._tansu.address

    def kafka_url(self) -> str:
        """The engine's ``kafka://`` URL, with quick group timings on Tansu."""
        if os.environ.get("DEERFLOW_KAFKA_BOOTSTRAP"):
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

    async def compare(self, comparison: Comparison) -> list[Row]:
        """Run one comparison and keep its rows."""
        rows = await run_comparison(comparison, self.settings)
        self.rows.extend(rows)
        return rows

    def add(self, rows: list[Row]) -> None:
        """Keep rows a scenario made itself (skipped or pending ones)."""
        self.rows.extend(rows)

    def close(self) -> None:
        """Stop every service this run started; remove the scratch directory."""
        for service in (self._redis, self._moto, self._tansu):
            if service is not None:
                service.stop()
        if self._tmp is not None:
            self._tmp.cleanup()


__all__ = ["BenchContext", "ServiceUnavailable", "Sizes"]
