"""Session services (Kafka, moto) and the event log every backend-neutral test runs against."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from deerflow.eventstore import EventLog, open_log
from deerflow.testing import ApacheKafka, ServiceUnavailable, start_apache_kafka
from tests.services import kafka_broker, start_kafka, start_moto, unique_name

# Tansu answers group joins after half the session timeout; 1 s keeps each join near 1 s
# (3 s: 2 s, and 7 s for a group's second generation). The Apache Kafka the suite starts
# accepts 1 s too (its group.min.session.timeout.ms is lowered to 1 s, a test-only setting);
# any other real Kafka keeps the library defaults (Kafka's minimum is 6 s).
FAST_GROUPS = "session_timeout_ms=1000&heartbeat_interval_ms=300"


@pytest.fixture(scope="session", autouse=True)
def run_index_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Run indexes of Kafka logs go to a directory of the session, not the working directory."""
    path = tmp_path_factory.mktemp("runindex")
    before = os.environ.get("DEERFLOW_INDEX")
    os.environ["DEERFLOW_INDEX"] = str(path)
    yield path
    if before is None:
        os.environ.pop("DEERFLOW_INDEX", None)
    else:
        os.environ["DEERFLOW_INDEX"] = before


@pytest.fixture(scope="session")
def kafka_bootstrap(request: pytest.FixtureRequest) -> Iterator[str]:
    """``host:port`` of the session's Kafka broker: ``DEERFLOW_KAFKA_BOOTSTRAP``, or a fresh
    Tansu or Apache Kafka as ``DEERFLOW_KAFKA_BROKER`` says (one per session)."""
    given = os.environ.get("DEERFLOW_KAFKA_BOOTSTRAP")
    if given:
        yield given
        return
    broker = start_kafka()
    try:
        yield broker.address
    finally:
        if isinstance(broker, ApacheKafka):
            _report_apache_kafka(request.session, broker)
        else:
            broker.stop()


# Lines for the end of the session's report: a fixture's teardown output is captured.
_SUMMARY: list[str] = []


def _report_apache_kafka(session: pytest.Session, broker: ApacheKafka) -> None:
    """Stop the broker; say what it cost, and keep its log if a test failed."""
    rss, cpu = broker.rss_bytes(), broker.cpu_seconds()
    failed = session.testsfailed
    # Its data is thrown away: a controlled shutdown (up to 30 s) would buy nothing.
    broker.stop(keep_log=bool(failed), grace=3.0)
    _SUMMARY.append(
        f"Apache Kafka on {broker.address}: answered metadata {broker.started_in:.1f}s after "
        f"its start, RSS {rss / 2**20:.0f} MiB at the end, {cpu:.0f}s CPU"
        + (f"; its log: {broker.log_path}" if failed else "")
    )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print what the session's brokers reported."""
    for line in _SUMMARY:
        terminalreporter.write_line(line)


# -- the slowest modules first ----------------------------------------------------------------
# With ``-n 4 --dist worksteal`` a process that runs out of tests takes half of another's
# queue; a test of a minute started last would still leave one process alone for that minute.
# These modules hold the suite's longest tests (``--durations``): they start first, in this
# order, each module's tests kept together and in their order.
SLOW_FIRST = (
    "tests/bench/test_bench_smoke.py",
    "tests/web/test_api_contract.py",
    "tests/matching/test_processes.py",
    "tests/reliability/",
    "tests/cli/test_cli_machines.py",
    "tests/connectors/test_schedule_processes.py",
    "tests/payloads/test_cleanup.py",
    "tests/payloads/test_cli.py",
    "tests/engine/test_durability.py",
    "tests/eventstore/test_sqlite_store_file.py",
    "tests/waiting/test_example.py",
    "tests/waiting/test_two_processes.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move the tests of :data:`SLOW_FIRST` to the front (a stable sort: same order in every
    process, as xdist requires)."""

    def rank(item: pytest.Item) -> int:
        for index, prefix in enumerate(SLOW_FIRST):
            if item.nodeid.startswith(prefix):
                return index
        return len(SLOW_FIRST)

    items.sort(key=rank)


# -- one Apache Kafka for all the test processes ---------------------------------------------
# A JVM broker costs each xdist process seconds of start and a core's share all along; the
# processes' tests use names of their own (unique_name), so one broker serves them all. The
# controller starts it before the processes start, which find it in DEERFLOW_KAFKA_BOOTSTRAP
# (with DEERFLOW_KAFKA_BROKER=apache, so they still know its kind and its quick groups).
_SHARED_BROKER = pytest.StashKey[ApacheKafka]()


def pytest_configure(config: pytest.Config) -> None:
    """In the controller of ``-n N`` on Apache Kafka, start the broker the workers share."""
    distributed = bool(getattr(config.option, "tx", None)) and config.option.dist != "no"
    if (
        not distributed
        or hasattr(config, "workerinput")  # a worker: the controller has started it
        or config.option.collectonly
        or kafka_broker() != "apache"
        or os.environ.get("DEERFLOW_KAFKA_BOOTSTRAP")
    ):
        return
    try:
        broker = start_apache_kafka()
    except ServiceUnavailable:
        return  # each worker tries on its own and skips (fails on CI) naming the reason
    config.stash[_SHARED_BROKER] = broker
    os.environ["DEERFLOW_KAFKA_BOOTSTRAP"] = broker.address


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Stop the shared broker (the summary says what it cost)."""
    broker = session.config.stash.get(_SHARED_BROKER, None)
    if broker is not None:
        os.environ.pop("DEERFLOW_KAFKA_BOOTSTRAP", None)
        _report_apache_kafka(session, broker)


@pytest.fixture(scope="session")
def real_kafka() -> bool:
    """Whether the Kafka tests run on a real Kafka (not Tansu)."""
    return kafka_broker() != "tansu"


@pytest.fixture
def kafka_url(kafka_bootstrap: str) -> str:
    """A ``kafka://`` URL for the session broker, with quick group timings on the brokers the
    suite starts (or is told are of that kind)."""
    if kafka_broker() == "kafka":
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


@pytest.fixture(
    params=[
        "memory",
        "sqlite",
        pytest.param("kafka", marks=pytest.mark.kafka),
        pytest.param("kafka-confluent", marks=pytest.mark.kafka),
    ]
)
def event_log_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a fresh log on each backend in turn (Kafka with each producer client)."""
    if request.param == "memory":
        return f"memory://{unique_name('log')}"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'events.db'}"
    url = str(request.getfixturevalue("kafka_url"))
    if request.param == "kafka-confluent":
        pytest.importorskip("confluent_kafka")
        return url + ("&" if "?" in url else "?") + "client=confluent"
    return url


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
