"""``deerflow serve`` as a new user meets it: what it prints, what it answers while it starts,
and the one line it says when it cannot start."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from deerflow import Engine
from deerflow.testing import free_port
from tests.connectors.conftest import dead_letters
from tests.services import unique_name

ROOT = Path(__file__).resolve().parents[2]
DEERFLOW_SERVE = [sys.executable, "-m", "deerflow", "serve"]
TASK = """

@workflow.task(id="take")
def take(context):
    return None
"""


class Serving:
    """``deerflow serve`` in a subprocess; its stdout lines arrive on a queue."""

    def __init__(self, args: list[str], env: dict[str, str], stderr: Path) -> None:
        self.stderr = stderr
        with stderr.open("wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "deerflow", "serve", *args],
                stdout=subprocess.PIPE,
                stderr=err,
                env=env,
                cwd=ROOT,
            )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.decode().rstrip("\n"))

    def line(self, starting: str, within: float = 40) -> str:
        """The next stdout line starting with ``starting`` (fails after ``within`` s)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                continue
            self.seen.append(line)
            if line.startswith(starting):
                return line
        self.process.kill()
        pytest.fail(f"no line {starting!r}; stdout: {self.seen}; stderr: {self.errors()}")

    def errors(self) -> str:
        return self.stderr.read_text(errors="replace")

    def interrupt(self) -> int:
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=30)
        finally:
            if self.process.poll() is None:
                self.process.kill()

    def rest(self) -> list[str]:
        """Every stdout line not read yet (after the process ended)."""
        time.sleep(0.2)
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return self.seen


def get(url: str, key: str | None = None) -> tuple[int, str, str]:
    """Status, content type and body of a GET (with ``X-API-Key: key``)."""
    request = urllib.request.Request(url, headers={"X-API-Key": key} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, reply.headers["Content-Type"], reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def up(url: str) -> bool:
    try:
        return get(url)[0] == 200
    except urllib.error.URLError:
        return False


@pytest.fixture
def env(prefix: str) -> dict[str, str]:
    return dict(os.environ, DEERFLOW_PREFIX=prefix, PYTHONPATH=str(ROOT))


@pytest.mark.kafka
def test_serve_on_kafka_joins_its_groups_at_once_and_answers_503_meanwhile(
    tmp_path: Path, kafka_bootstrap: str, env: dict[str, str]
) -> None:
    groups = [unique_name("g") for _ in range(3)]
    app = tmp_path / "app.py"
    app.write_text(
        "from deerflow import Workflow\nfrom deerflow.events import KafkaEvent\n"
        'workflow = Workflow(name="fanin")\n'
        + "".join(
            f"workflow.add_trigger(KafkaEvent(topic={unique_name('t')!r}, consumer_group={g!r}))\n"
            for g in groups
        )
        + TASK
    )
    # Each join takes about half the session timeout on Tansu (3 s here): one after the other,
    # the engine's two groups and three triggers' would take at least 4 x 3 s.
    store = f"kafka://{kafka_bootstrap}?session_timeout_ms=6000&heartbeat_interval_ms=1000"
    keyed = dict(env, DEERFLOW_API_KEYS="k")
    served = Serving([str(app), "--store", store, "--port", "0"], keyed, tmp_path / "err")
    url = served.line("deerflow serve: starting on ").split()[4].rstrip(";")

    status, kind, body = get(f"{url}/api/runs", key="k")
    assert (status, kind) == (503, "application/json")
    waiting = json.loads(body)
    assert waiting["error"] == "starting"
    for group in groups:
        assert any(group in item for item in waiting["waiting_for"]), waiting
    assert get(f"{url}/api/runs")[::2] == (503, '{"error":"starting"}')  # no key: no names
    status, kind, page = get(f"{url}/ui/", key="k")
    assert status == 503 and kind.startswith("text/html") and "starting" in page
    assert groups[0] in page

    assert served.line("deerflow serve: listening on ") == f"deerflow serve: listening on {url}"
    summary = served.line("serving ")
    took = float(re.search(r"started in ([\d.]+)s", summary)[1])  # type: ignore[index]
    assert summary.startswith("serving 1 workflow, 3 triggers on kafka://")
    assert took < 9, summary
    assert served.line("dashboard: ").startswith(f"dashboard: {url}/ui/")
    assert get(f"{url}/api/runs", key="k")[0] == 200
    assert served.interrupt() == 0
    lines = served.rest()
    assert lines[-2].startswith("stopping: draining")
    assert re.fullmatch(r"stopped in [\d.]+s", lines[-1]), lines
    assert not any(line.startswith("webhook") for line in lines)  # the app has no webhook
    errors = served.errors()
    assert "aiokafka" not in errors and "webhook gateway" not in errors, errors
    assert "Traceback" not in errors


@pytest.mark.kafka
def test_the_libraries_log_lines_show_only_at_log_level_debug(
    tmp_path: Path, kafka_url: str, env: dict[str, str]
) -> None:
    app = tmp_path / "app.py"
    app.write_text(
        "from deerflow import Workflow\nfrom deerflow.events import KafkaEvent\n"
        'workflow = Workflow(name="w")\n'
        f"workflow.add_trigger(KafkaEvent(topic={unique_name('t')!r}))\n" + TASK
    )
    served = Serving(
        [str(app), "--store", kafka_url, "--port", "0", "--log-level", "debug"],
        env,
        tmp_path / "err",
    )
    served.line("deerflow serve: listening on ")
    assert served.interrupt() == 0
    assert "aiokafka" in served.errors()
    refused = subprocess.run(
        [sys.executable, "-m", "deerflow", "serve", str(app), "--log-level", "loud"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
    )
    assert refused.returncode == 2 and "use one of debug, info, warning, error" in refused.stderr


def failed_start(args: list[str], env: dict[str, str], within: float = 60) -> str:
    """Run ``deerflow serve ARGS`` expecting it not to start: its one error line."""
    done = subprocess.run(
        [sys.executable, "-m", "deerflow", "serve", *args, "--port", "0"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=within,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if not re.match(r"\d{4}-\d\d-\d\d ", line)]
    assert len(errors) == 1 and errors[0].startswith("error: "), done.stderr  # log lines aside
    return errors[0]


@pytest.fixture
def aws_env(env: dict[str, str], moto_endpoint: str) -> dict[str, str]:
    return dict(
        env,
        AWS_ENDPOINT_URL=moto_endpoint,
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",
        AWS_DEFAULT_REGION="us-east-1",
    )


def s3_app(tmp_path: Path, **options: object) -> str:
    app = tmp_path / "s3app.py"
    spec = ", ".join(f"{k}={v!r}" for k, v in options.items())
    app.write_text(
        "from deerflow import Workflow\nfrom deerflow.events import S3Event\n"
        f'workflow = Workflow(name="files")\nworkflow.add_trigger(S3Event({spec}))\n' + TASK
    )
    return str(app)


@pytest.mark.s3
@pytest.mark.parametrize("mode", ["notification", "poll"])
def test_an_s3_trigger_on_a_missing_bucket_stops_serve_at_start_in_one_line(
    tmp_path: Path, aws_env: dict[str, str], moto_endpoint: str, mode: str
) -> None:
    bucket = unique_name("missing")
    app = s3_app(tmp_path, bucket=bucket, mode=mode, poll_interval=600.0)
    began = time.monotonic()
    error = failed_start([app, "--store", "memory://"], aws_env)
    assert time.monotonic() - began < 30  # at start, not after poll_interval
    assert error == (
        f"error: S3 trigger files.s3.{bucket}: listing bucket {bucket!r} failed: bucket "
        f"{bucket!r} does not exist at {moto_endpoint}: create it, or fix bucket="
    )


@pytest.mark.s3
def test_an_s3_trigger_on_a_missing_queue_stops_serve_in_one_line(
    tmp_path: Path, aws_env: dict[str, str]
) -> None:
    app = s3_app(tmp_path, bucket="any", queue="no-such-queue")
    error = failed_start([app, "--store", "memory://"], aws_env)
    assert "finding SQS queue 'no-such-queue' failed: queue 'no-such-queue' does not exist" in (
        error
    ), error
    assert error.endswith("create it, or fix queue=")


@pytest.mark.s3
def test_wrong_aws_credentials_stop_serve_in_one_line(
    tmp_path: Path, aws_env: dict[str, str]
) -> None:
    # A moto_server that checks credentials (it accepts any by default).
    port = free_port()
    moto = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        env=dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="0"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        endpoint = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while not up(f"{endpoint}/moto-api/"):
            assert time.monotonic() < deadline, "moto_server did not start"
            time.sleep(0.2)
        error = failed_start(
            [s3_app(tmp_path, bucket="lake"), "--store", "memory://"],
            dict(aws_env, AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="wrong"),
        )
    finally:
        moto.terminate()
        moto.wait(10)
    assert "listing bucket 'lake' failed" in error
    assert f"{endpoint} refused the credentials (InvalidAccessKeyId)" in error, error
    assert error.endswith("check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the AWS profile")


APPS = {
    "webhook_without_keys": (
        "from deerflow.events import WebhookEvent\n"
        'workflow.add_trigger(WebhookEvent(path="/h", auth="api_key"))\n',
        "error: a webhook uses auth='api_key' but no API keys are configured "
        "(DEERFLOW_API_KEYS or [gateway] api_keys)",
    ),
    "misspelt_option": (
        "from deerflow.events import KafkaEvent\n"
        'workflow.add_trigger(KafkaEvent(topic="t", batchsize=10))\n',
        "error: KafkaEvent: unknown option 'batchsize' (options: batch_size, ",
    ),
    "bad_option_value": (
        'from deerflow.events import WebhookEvent\nworkflow.add_trigger(WebhookEvent(path="h"))\n',
        "error: WebhookEvent: path: webhook path must start with '/', got 'h'",
    ),
    "task_depending_on_itself": (
        '@workflow.task(id="a", depends_on=["a"])\ndef a(context):\n    return None\n',
        "error: workflow 'w', task 'a': dependency cycle a -> a",
    ),
}


@pytest.mark.parametrize("case", sorted(APPS))
def test_a_bad_spec_stops_serve_in_one_line(tmp_path: Path, env: dict[str, str], case: str) -> None:
    body, expected = APPS[case]
    app = tmp_path / "app.py"
    app.write_text(f"from deerflow import Workflow\nworkflow = Workflow(name='w')\n{body}{TASK}")
    env.pop("DEERFLOW_API_KEYS", None)
    assert failed_start([str(app), "--store", "memory://"], env).startswith(expected)


def test_an_unreachable_kafka_or_a_taken_port_stops_serve_in_one_line(
    tmp_path: Path, env: dict[str, str]
) -> None:
    app = tmp_path / "app.py"
    app.write_text("from deerflow import Workflow\nworkflow = Workflow(name='w')\n" + TASK)
    nowhere = f"kafka://127.0.0.1:{free_port()}"
    error = failed_start([str(app), "--store", nowhere], env)
    assert error.startswith(f"error: cannot reach Kafka at {nowhere}")
    assert error.endswith("start it, or point --store / $DEERFLOW_STORE at a reachable store")
    trigger = tmp_path / "trigger.py"
    trigger.write_text(
        "from deerflow import Workflow\nfrom deerflow.events import KafkaEvent\n"
        "workflow = Workflow(name='w')\n"
        f"workflow.add_trigger(KafkaEvent(topic='t', bootstrap_servers={nowhere[8:]!r}))\n" + TASK
    )
    error = failed_start([str(trigger), "--store", "memory://"], env)
    assert error.startswith(f"error: Kafka trigger w.kafka.t: cannot reach Kafka at {nowhere}")
    assert error.endswith("check bootstrap_servers= or $DEERFLOW_KAFKA_BOOTSTRAP")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [*DEERFLOW_SERVE, str(app), "--store", "memory://", "--port", str(port)],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=60,
            check=False,
        )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"error: cannot listen on 127.0.0.1:{port} (address already in use)" in done.stderr


@pytest.mark.kafka
def test_a_replayed_poison_message_gets_no_second_dead_letter_and_the_log_names_the_trigger(
    tmp_path: Path, kafka_url: str, kafka_bootstrap: str, env: dict[str, str]
) -> None:
    topic = unique_name("orders")
    app = tmp_path / "app.py"
    app.write_text(
        "from deerflow import Workflow\nfrom deerflow.events import KafkaEvent\n"
        'workflow = Workflow(name="orders")\n'
        f"workflow.add_trigger(KafkaEvent(topic={topic!r}))\n" + TASK
    )
    store = f"sqlite:///{tmp_path / 'events.db'}"

    async def publish() -> None:
        async with AIOKafkaProducer(bootstrap_servers=kafka_bootstrap) as producer:
            await producer.send_and_wait(topic, b"tru", partition=0)
            await producer.send_and_wait(topic, b'{"n": 1}', partition=0)

    async def letters() -> list[dict[str, object]]:
        async with Engine(store, orchestrate=False, work=False) as engine:
            return await dead_letters(engine)

    asyncio.run(publish())
    name = f"orders.kafka.{topic}"
    replay = [sys.executable, "-m", "deerflow", "triggers", "replay", name, "--app", str(app)]
    outputs = []
    for _ in range(2):
        done = subprocess.run(
            [*replay, "--store", store, "--from-offset", "0"],
            capture_output=True,
            text=True,
            env=dict(env, DEERFLOW_KAFKA_BOOTSTRAP=kafka_url),
            cwd=ROOT,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        outputs.append(done.stderr)
    assert (
        f"workflow orders, trigger {name}: dead-lettering input {topic}/0/0: not JSON: 'tru'"
        in outputs[0]
    ), outputs[0]
    assert "dead-lettering" not in outputs[1], outputs[1]
    assert f"trigger {name}: input {topic}/0/0 has a dead letter already" in outputs[1]
    (letter,) = asyncio.run(letters())
    assert letter["reason"] == "not JSON: 'tru'" and letter["offset"] == 0
    assert letter["trigger"] == name and letter["workflow"] == "orders"


@pytest.mark.kafka
def test_serve_interrupted_while_its_groups_join_stops_cleanly_and_says_so(
    tmp_path: Path, kafka_bootstrap: str, env: dict[str, str]
) -> None:
    app = tmp_path / "app.py"
    app.write_text(
        "from deerflow import Workflow\nfrom deerflow.events import KafkaEvent\n"
        'workflow = Workflow(name="w")\n'
        f"workflow.add_trigger(KafkaEvent(topic={unique_name('t')!r}))\n" + TASK
    )
    store = f"kafka://{kafka_bootstrap}?session_timeout_ms=6000&heartbeat_interval_ms=1000"
    served = Serving([str(app), "--store", store, "--port", "0"], env, tmp_path / "err")
    served.line("deerflow serve: starting on ")
    time.sleep(0.5)  # the joins are under way (each takes about 3 s here)
    began = time.monotonic()
    assert served.interrupt() == 0
    assert time.monotonic() - began < 10
    lines = served.rest()
    assert not any("listening on" in line for line in lines), lines
    assert lines[-2].startswith("stopping: draining") and lines[-1].startswith("stopped in ")
    errors = served.errors()
    assert "Traceback" not in errors and "Unclosed" not in errors, errors


def test_serve_names_its_workflows_triggers_and_urls_in_words(
    tmp_path: Path, env: dict[str, str]
) -> None:
    app = tmp_path / "app.py"
    app.write_text(
        "from deerflow import Workflow\nfrom deerflow.events import WebhookEvent\n"
        "other = Workflow(name='other')\nother.task(id='t')(lambda context: None)\n"
        "workflow = Workflow(name='w')\nworkflow.add_trigger(WebhookEvent(path='/hook'))\n" + TASK
    )
    served = Serving([str(app), "--store", "memory://", "--port", "0"], env, tmp_path / "err")
    url = served.line("deerflow serve: listening on ").rsplit(" ", 1)[1]
    assert served.line("serving ").startswith("serving 2 workflows, 1 trigger on memory://")
    assert served.line("dashboard: ") == (
        f"dashboard: {url}/ui/  API: {url}/api/  metrics: {url}/metrics"
    )
    assert served.line("webhook: ") == f"webhook: POST {url}/hook"
    assert get(f"{url}/api/runs")[0] == 200
    assert served.interrupt() == 0
    assert served.rest()[-2:][0] == "stopping: draining triggers and tasks"
