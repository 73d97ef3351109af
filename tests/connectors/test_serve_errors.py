"""``deerflow serve`` that cannot start says why in one line, with exit code 2 and no
traceback: a missing bucket or queue, refused credentials, an unreachable Kafka, a taken port,
a bad spec."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deerflow.testing import free_port
from tests.connectors.serving import DEERFLOW_SERVE, ROOT, TASK, failed_start, up, write_app
from tests.services import unique_name


def s3_app(tmp_path: Path, **options: object) -> str:
    spec = ", ".join(f"{k}={v!r}" for k, v in options.items())
    return str(write_app(tmp_path, "files", f"S3Event({spec})"))


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
    "a_trigger_and_a_wait_on_one_path": (
        "from deerflow.events import WebhookEvent\n"
        'workflow.add_trigger(WebhookEvent(path="/paid"))\n'
        'workflow.wait_for_event(id="paid", event="Paid", match={"data.order": "params.order"},'
        ' source=WebhookEvent(path="/paid"))\n',
        "error: webhook POST /paid of workflow 'w': the path is served already (trigger "
        "'w.webhook.paid'); give one of them another path",
    ),
    "task_depending_on_itself": (
        '@workflow.task(id="a", depends_on=["a"])\ndef a(context):\n    return None\n',
        "error: workflow 'w', task 'a': dependency cycle: a → a",
    ),
}


@pytest.mark.parametrize("case", sorted(APPS))
def test_a_bad_spec_stops_serve_in_one_line(
    tmp_path: Path, cli_env: dict[str, str], case: str
) -> None:
    body, expected = APPS[case]
    app = tmp_path / "app.py"
    app.write_text(f"from deerflow import Workflow\nworkflow = Workflow(name='w')\n{body}{TASK}")
    cli_env.pop("DEERFLOW_API_KEYS", None)
    assert failed_start([str(app), "--store", "memory://"], cli_env).startswith(expected)


def test_an_unreachable_kafka_or_a_taken_port_stops_serve_in_one_line(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    plain, remote = tmp_path / "plain", tmp_path / "remote"
    plain.mkdir()
    remote.mkdir()
    app = write_app(plain, "w")
    nowhere = f"kafka://127.0.0.1:{free_port()}"
    error = failed_start([str(app), "--store", nowhere], cli_env)
    assert error.startswith(f"error: cannot reach Kafka at {nowhere}")
    assert error.endswith("start it, or point --store / $DEERFLOW_STORE at a reachable store")
    trigger = write_app(remote, "w", f"KafkaEvent(topic='t', bootstrap_servers={nowhere[8:]!r})")
    error = failed_start([str(trigger), "--store", "memory://"], cli_env)
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
            env=cli_env,
            cwd=ROOT,
            timeout=60,
            check=False,
        )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"error: cannot listen on 127.0.0.1:{port} (address already in use)" in done.stderr
