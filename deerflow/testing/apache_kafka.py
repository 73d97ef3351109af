"""Apache Kafka from Maven Central: a single-node KRaft broker for tests and benchmarks.

:func:`start_apache_kafka` runs the broker the way a production cluster of one does (combined
broker and controller, no ZooKeeper) from the jars ``kafka/pom.xml`` pins, the version
``compose/`` runs. The first call fills a jar cache with ``mvn dependency:copy-dependencies``
(Maven keeps its own copy under ``~/.m2``); later calls start from the cache::

    broker = start_apache_kafka()          # formats the storage, waits until it answers metadata
    try:
        url = f"kafka://{broker.address}"
    finally:
        broker.stop()                      # SIGTERM (a clean shutdown), then kill after a bound

Settings: :data:`BROKER_SETTINGS` are the ones ``compose/docker-compose.yml`` gives its broker
too; :data:`TEST_SETTINGS` only make a test broker quicker (short group sessions, a small
group offsets topic, frequent retention and compaction passes). The broker's output goes to
``server.log`` in its directory, which :meth:`ApacheKafka.stop` can keep.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import uuid
from base64 import urlsafe_b64encode
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from deerflow.testing.services import Service, ServiceUnavailable, free_port

__all__ = [
    "BROKER_SETTINGS",
    "TEST_SETTINGS",
    "ApacheKafka",
    "answers_metadata",
    "console_producer",
    "ensure_jars",
    "jar_cache",
    "kafka_version",
    "start_apache_kafka",
]

KAFKA_DIR = Path(__file__).with_name("kafka")
POM = KAFKA_DIR / "pom.xml"
LOG4J2 = KAFKA_DIR / "log4j2.xml"

#: What every single-node broker needs, the tests' and compose's alike (test_compose checks
#: that compose gives its broker these): one replica of the internal topics, and no wait for
#: more group members before the first rebalance.
BROKER_SETTINGS: dict[str, str] = {
    "offsets.topic.replication.factor": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "group.initial.rebalance.delay.ms": "0",
}

#: A test broker's extras, never a production setting: group sessions down to 1 s (Kafka
#: refuses under 6 s by default; the suite's quick rebalances use 1 s), retention and
#: compaction passes every second instead of every 5 minutes and 15 seconds, and a group
#: offsets topic of 4 partitions instead of 50 (the first group to join creates it: on a busy
#: two-core machine, 50 took longer than an engine waits for its first assignment).
TEST_SETTINGS: dict[str, str] = {
    "group.min.session.timeout.ms": "1000",
    "offsets.topic.num.partitions": "4",
    "log.retention.check.interval.ms": "1000",
    "log.cleaner.backoff.ms": "1000",
}

HEAP = "512m"
START_TIMEOUT = 120.0  # a cold JVM on a busy two-core machine
STOP_TIMEOUT = 30.0
MAVEN_TIMEOUT = 900.0
START_ATTEMPTS = 3


def kafka_version() -> str:
    """The Kafka version ``kafka/pom.xml`` pins (``<kafka.version>``)."""
    found = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", POM.read_text())
    if found is None:
        raise RuntimeError(f"{POM} pins no <kafka.version>")
    return found.group(1).strip()


def jar_cache() -> Path:
    """Where the broker's jars are copied: ``$DEERFLOW_KAFKA_JARS``, or
    ``$XDG_CACHE_HOME/deerflow/kafka-<version>`` (``~/.cache`` without it)."""
    given = os.environ.get("DEERFLOW_KAFKA_JARS")
    if given:
        return Path(given)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "deerflow" / f"kafka-{kafka_version()}"


def ensure_jars() -> Path:
    """The jar cache, filled by Maven from ``kafka/pom.xml`` on first use.

    The jars are copied into a fresh directory that is renamed into place once complete, so a
    copy interrupted or made by two processes at once never leaves half a cache.

    Raises:
        ServiceUnavailable: Maven is not installed or could not fetch the jars.
    """
    cache = jar_cache()
    if (cache / ".complete").exists():
        return cache
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ServiceUnavailable(f"no jars in {cache} and no mvn to fetch them (install Maven)")
    cache.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"{cache.name}-", dir=cache.parent))
    try:
        done = subprocess.run(
            [
                mvn,
                "-q",
                "-B",
                "-f",
                str(POM),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={scratch}",
            ],
            capture_output=True,
            timeout=MAVEN_TIMEOUT,
            check=False,
        )
        if done.returncode != 0:
            output = (done.stdout + done.stderr).decode(errors="replace")[-2000:]
            raise ServiceUnavailable(f"mvn could not fetch the Kafka jars: {output}")
        (scratch / ".complete").write_text(kafka_version())
        try:
            scratch.rename(cache)
        except OSError:  # another process completed it first
            if not (cache / ".complete").exists():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return cache


def _metadata_request() -> bytes:
    # Metadata v4 (the oldest Kafka 4 answers), header v1, asking for no topics.
    client = b"deerflow-probe"
    header = struct.pack(">hhih", 3, 4, 1, len(client)) + client
    body = struct.pack(">ib", 0, 0)  # topics: empty array; allow_auto_topic_creation: false
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


def answers_metadata(port: int, timeout: float = 1.0) -> bool:
    """Whether a broker on loopback ``port`` answers a Metadata request naming a broker."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(_metadata_request())
            reply = b""
            # size, correlation id, throttle time, broker count
            while len(reply) < 16:
                chunk = sock.recv(16 - len(reply))
                if not chunk:
                    return False
                reply += chunk
    except OSError:
        return False
    _size, correlation, _throttle, brokers = struct.unpack(">iiii", reply)
    return bool(correlation == 1 and brokers > 0)


def _cluster_id() -> str:
    return urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


@dataclass
class ApacheKafka(Service):
    """A running single-node Apache Kafka (see :func:`start_apache_kafka`).

    Attributes:
        directory: holds ``server.properties``, ``server.log`` and the data (``data/``).
        started_in: seconds from the JVM's start until the broker answered metadata.
    """

    directory: Path
    started_in: float

    @property
    def log_path(self) -> Path:
        """The broker's output (kept by ``stop(keep_log=True)``)."""
        return self.directory / "server.log"

    def stop(self, *, keep_log: bool = False, grace: float = STOP_TIMEOUT) -> None:
        """SIGTERM (a controlled shutdown), kill after ``grace`` seconds; then remove the
        directory, or only the data with ``keep_log`` (for a failed test's report).

        A throwaway broker can pass a short ``grace``: a single-node KRaft broker's controlled
        shutdown often takes the whole :data:`STOP_TIMEOUT`, and its data is removed anyway.
        """
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        shutil.rmtree(self.directory / "data" if keep_log else self.directory, ignore_errors=True)


def _properties(data: Path, port: int, controller: int, settings: Mapping[str, str]) -> str:
    lines = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(data),
        **settings,
    }
    return "".join(f"{key}={value}\n" for key, value in lines.items())


def _java(jars: Path, heap: str, main: str, *args: str) -> list[str]:
    java = shutil.which("java")
    if java is None:
        raise ServiceUnavailable("java not found (Apache Kafka needs Java 17 or later)")
    return [
        java,
        f"-Xmx{heap}",
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={LOG4J2}",
        "-cp",
        f"{jars}/*",
        main,
        *args,
    ]


def console_producer(bootstrap: str, topic: str, *options: str) -> list[str]:
    """The command line of Kafka's console producer (from the same jars) writing stdin's lines
    to ``topic``, one record each; ``options`` go after (e.g. ``--property parse.key=true``).

    Raises:
        ServiceUnavailable: no Java or no jars.
    """
    jars = ensure_jars()
    return _java(
        jars,
        "256m",
        "org.apache.kafka.tools.ConsoleProducer",
        "--bootstrap-server",
        bootstrap,
        "--topic",
        topic,
        *options,
    )


def start_apache_kafka(
    directory: Path | None = None,
    *,
    heap: str = HEAP,
    settings: Mapping[str, str] | None = None,
    timeout: float = START_TIMEOUT,
) -> ApacheKafka:
    """Format a fresh storage and start a broker on free loopback ports.

    Args:
        directory: where the properties, log and data go; a new temporary one if omitted.
        heap: the JVM's ``-Xmx``.
        settings: broker properties over :data:`BROKER_SETTINGS` and :data:`TEST_SETTINGS`.
        timeout: seconds to wait for the broker to answer metadata.

    Returns:
        The broker, answering metadata on ``address``.

    Raises:
        ServiceUnavailable: no Java, no jars, or the broker did not come up (the message
            holds the end of its log).
    """
    jars = ensure_jars()
    directory = directory or Path(tempfile.mkdtemp(prefix="deerflow-kafka-"))
    directory.mkdir(parents=True, exist_ok=True)
    wanted = {**BROKER_SETTINGS, **TEST_SETTINGS, **(settings or {})}
    last = ""
    for _ in range(START_ATTEMPTS):
        port, controller = free_port(), free_port()
        if port == controller:
            continue
        data = directory / "data"
        shutil.rmtree(data, ignore_errors=True)
        properties = directory / "server.properties"
        properties.write_text(_properties(data, port, controller, wanted))
        formatted = subprocess.run(
            [
                *_java(jars, "256m", "kafka.tools.StorageTool", "format"),
                *("--cluster-id", _cluster_id(), "--config", str(properties)),
            ],
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        if formatted.returncode != 0:
            output = (formatted.stdout + formatted.stderr).decode(errors="replace")
            raise ServiceUnavailable(f"Kafka's StorageTool failed: {output[-2000:]}")
        log = (directory / "server.log").open("ab+")
        started = time.monotonic()
        process = subprocess.Popen(
            _java(jars, heap, "kafka.Kafka", str(properties)),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        broker = ApacheKafka("Apache Kafka", process, f"127.0.0.1:{port}", log, directory, 0.0)
        deadline = started + timeout
        while process.poll() is None and time.monotonic() < deadline:
            if answers_metadata(port):
                broker.started_in = time.monotonic() - started
                return broker
            time.sleep(0.1)
        last = broker.output()
        broker.stop(keep_log=True)
        if "Address already in use" not in last:
            break
    raise ServiceUnavailable(f"Apache Kafka did not start (log in {directory}): {last}")
