"""compose/: the production stack's file is valid, names only what exists, and its app works.

No Docker engine runs here, so the compose file is checked statically: against the compose-spec
JSON schema (``tests/compose_spec.json``, the Compose Specification schema as shipped in the
``docker-compose`` 1.29.2 wheel on PyPI, ``compose/config/compose_spec.json``); its images
against the public images we know exist; its ``deerflow`` commands against the real CLI; its
settings against how deerflow reads them. ``compose/app.py`` then runs on a Kafka-protocol
broker and moto's S3 with the notifications MinIO's Kafka target publishes.
"""

from __future__ import annotations

import asyncio
import json
import re
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import boto3
import jsonschema
import orjson
import pytest
import yaml
from aiokafka import AIOKafkaProducer

from deerflow import Engine
from deerflow.cli._loader import load_module_workflows
from deerflow.connectors import ApiKeys, load_config
from deerflow.connectors._auth import configured_secrets
from deerflow.engine import Topics
from deerflow.eventstore.kafka import KafkaSettings
from deerflow.serve import serve
from deerflow.testing.apache_kafka import BROKER_SETTINGS, TEST_SETTINGS, kafka_version
from tests.cli_lines import parse_deerflow
from tests.services import unique_name

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "compose"
SCHEMA = Path(__file__).with_name("compose_spec.json")

# Public images (and tags) the stack may use. Each is pinned, and each is known to exist on
# Docker Hub: apache/kafka publishes one tag per Kafka release (4.3.2: the version the tests'
# broker runs, pinned in deerflow/testing/kafka/pom.xml); MinIO
# tags every server and client build RELEASE.<UTC time>; python publishes <version>-slim.
KNOWN_IMAGES = frozenset(
    {
        "apache/kafka:4.3.2",
        "minio/minio:RELEASE.2025-09-07T16-13-09Z",
        "minio/mc:RELEASE.2025-08-13T08-35-41Z",
        "python:3.12-slim",
    }
)
# Real Kafka's default group.min.session.timeout.ms: shorter sessions are refused at join.
KAFKA_MIN_SESSION_MS = 6000


@pytest.fixture(scope="module")
def stack() -> dict[str, Any]:
    return yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(stack: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return stack["services"]


def one_shot(service: dict[str, Any]) -> bool:
    """A setup job: runs once to completion (others depend on it having succeeded)."""
    return service.get("restart") == "no"


def validate(document: dict[str, Any]) -> list[str]:
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft201909Validator(schema)
    return [f"{e.json_path}: {e.message}" for e in validator.iter_errors(document)]


# -- the file ---------------------------------------------------------------------------------


def test_the_compose_file_matches_the_compose_spec_schema(stack):
    assert validate(stack) == []


def test_the_schema_check_rejects_a_misspelt_key(stack):
    broken = yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())
    broken["services"]["worker"]["healthcheck"]["intreval"] = "5s"
    assert any("intreval" in problem for problem in validate(broken))


def test_every_image_is_a_pinned_public_image_or_built_from_a_public_base(services):
    for name, service in services.items():
        if "build" in service:
            context = (COMPOSE / service["build"]["context"]).resolve()
            dockerfile = context / service["build"]["dockerfile"]
            bases = re.findall(r"^FROM\s+(\S+)", dockerfile.read_text(), re.M)
            assert bases and set(bases) <= KNOWN_IMAGES, (name, bases)
        else:
            assert service["image"] in KNOWN_IMAGES, (name, service["image"])


def test_the_dockerfile_copies_only_files_that_exist_and_installs_the_needed_extras():
    text = (COMPOSE / "Dockerfile").read_text()
    for line in re.findall(r"^COPY\s+(.+)$", text, re.M):
        *sources, _ = line.split()
        for source in sources:
            assert (ROOT / source).exists(), source
    assert '".[kafka,s3]"' in text  # aiokafka for the kafka:// store, boto3 for the app's tasks
    assert "COPY compose/app.py /app/app.py" in text


def test_every_deerflow_command_parses_with_the_real_cli(services):
    deerflow = {name: s for name, s in services.items() if s.get("command", [""])[0] == "deerflow"}
    assert set(deerflow) == {"gateway", "worker"}
    path, params = parse_deerflow(services["gateway"]["command"][1:])
    assert path == "deerflow serve" and params["host"] == "0.0.0.0" and params["port"] == 8000
    assert params["target"] == "/app/app.py"
    path, params = parse_deerflow(services["worker"]["command"][1:])
    assert path == "deerflow worker" and params["target"] == "/app/app.py"


def test_the_cli_check_rejects_an_option_that_does_not_exist():
    with pytest.raises(Exception, match="--hots"):
        parse_deerflow(["serve", "/app/app.py", "--hots", "0.0.0.0"])


def test_long_running_services_have_healthchecks_and_restart_policies(services):
    for name, service in services.items():
        assert service.get("restart") in ("no", "unless-stopped", "always", "on-failure"), name
        if not one_shot(service):
            check = service.get("healthcheck", {})
            assert check.get("test") and check.get("interval") and check.get("retries"), name


def test_dependencies_wait_for_health_or_completion_of_services_that_can_report_it(services):
    for name, service in services.items():
        for dependency, rule in service.get("depends_on", {}).items():
            target = services[dependency]
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in target, (name, dependency)
            elif rule["condition"] == "service_completed_successfully":
                assert one_shot(target), (name, dependency)


def test_workers_scale_with_docker_compose_up_scale(services):
    worker = services["worker"]
    assert "container_name" not in worker and "ports" not in worker  # replicas would clash


def test_the_broker_is_the_kafka_version_and_has_the_settings_the_tests_run(services):
    kafka = services["kafka"]
    assert kafka["image"] == f"apache/kafka:{kafka_version()}"
    assert services["kafka-setup"]["image"] == kafka["image"]
    environment = {key: str(value) for key, value in kafka["environment"].items()}
    for name, value in BROKER_SETTINGS.items():
        assert environment.get("KAFKA_" + name.upper().replace(".", "_")) == value, name
    # The test broker's extras (1 s group sessions, frequent cleaner passes) stay out.
    for name in TEST_SETTINGS:
        assert "KAFKA_" + name.upper().replace(".", "_") not in environment, name
    assert environment["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, as in the tests


def test_the_store_url_suits_a_real_kafka(services):
    for name in ("gateway", "worker"):
        url = services[name]["environment"]["DEERFLOW_STORE"]
        settings = KafkaSettings.from_url(url, {})
        assert settings.bootstrap == "kafka:9092"
        assert settings.session_timeout_ms >= KAFKA_MIN_SESSION_MS, name
        assert settings.heartbeat_interval_ms * 3 <= settings.session_timeout_ms


def test_large_payloads_go_to_a_minio_bucket_the_stack_creates(services):
    setup = services["minio-setup"]["command"][0]
    for name in ("gateway", "worker"):
        env = services[name]["environment"]
        bucket = env["DEERFLOW_BLOBS"].removeprefix("s3://").split("/")[0]
        assert env["DEERFLOW_BLOBS"].startswith("s3://") and bucket, name
        assert f"mc mb --ignore-existing local/{bucket}\n" in setup, name
        assert env["AWS_ENDPOINT_URL"] == "http://minio:9000", name
        assert services[name]["depends_on"]["minio-setup"] == {
            "condition": "service_completed_successfully"
        }


def test_deerflow_topics_are_created_first_and_histories_are_kept_forever(services):
    prefix = services["worker"]["environment"]["DEERFLOW_PREFIX"]
    assert services["gateway"]["environment"]["DEERFLOW_PREFIX"] == prefix
    topics = Topics.from_env(prefix)
    created = {}
    for line in services["kafka-setup"]["command"][0].splitlines():
        found = re.search(r"--topic (\S+) --partitions (\d+)(.*)", line)
        if found:
            created[found[1]] = (int(found[2]), "retention.ms=-1" in found[3])
    for topic in (topics.history, topics.events, topics.dlq):
        assert created[topic] == (8, True), topic  # a run is rebuilt from its whole history
    assert created[topics.tasks][0] == 8
    snapshots = next(
        line
        for line in services["kafka-setup"]["command"][0].splitlines()
        if f"--topic {topics.snapshots} " in line
    )
    # As many partitions as the history (p's snapshot is in p), compacted, never deleted.
    assert created[topics.snapshots] == (8, True)
    assert "cleanup.policy=compact" in snapshots
    marks = next(
        line
        for line in services["kafka-setup"]["command"][0].splitlines()
        if f"--topic {topics.archive_marks} " in line
    )
    assert created[topics.archive_marks] == (8, True) and "cleanup.policy=compact" in marks
    for name in ("gateway", "worker"):
        assert services[name]["depends_on"]["kafka-setup"]["condition"] == (
            "service_completed_successfully"
        )


def test_api_keys_reach_the_gateway_as_a_secret_deerflow_reads(stack, services):
    gateway = services["gateway"]
    (secret,) = gateway["secrets"]
    assert gateway["environment"]["DEERFLOW_CONFIG"] == f"/run/secrets/{secret}"
    assert stack["secrets"][secret]["file"] == "./secrets/deerflow.toml"
    example = COMPOSE / "secrets" / "deerflow.example.toml"
    config = load_config(example)
    assert ApiKeys.configured(config)  # what the gateway and the dashboard check
    assert configured_secrets([], config)  # what auth="hmac" webhooks check
    ignored = (COMPOSE / ".gitignore").read_text()
    assert "secrets/*" in ignored and "!secrets/deerflow.example.toml" in ignored


def test_minio_notifications_reach_the_topic_the_app_consumes(services, monkeypatch):
    minio = services["minio"]["environment"]
    (target,) = [
        k.removeprefix("MINIO_NOTIFY_KAFKA_ENABLE_")
        for k in minio
        if k.startswith("MINIO_NOTIFY_KAFKA_ENABLE_")
    ]
    topic = minio[f"MINIO_NOTIFY_KAFKA_TOPIC_{target}"]
    assert minio[f"MINIO_NOTIFY_KAFKA_BROKERS_{target}"] == "kafka:9092"
    assert f"--topic {topic} " in " ".join(services["kafka-setup"]["command"]) + " "
    setup = services["minio-setup"]["command"][0]
    assert f"local/uploads arn:minio:sqs::{target}:kafka" in setup
    assert "--prefix incoming/" in setup
    monkeypatch.setenv(
        "MINIO_EVENTS_TOPIC", services["worker"]["environment"]["MINIO_EVENTS_TOPIC"]
    )
    workflows, _ = load_module_workflows(str(COMPOSE / "app.py"))
    triggers = [t for wf in workflows for t in wf.triggers if getattr(t, "topic", None)]
    assert [t.topic for t in triggers] == [topic]


# -- the app, on a Kafka-protocol broker and S3 -------------------------------------------------


def minio_notification(
    bucket: str, key: str, size: int, etag: str, event: str, sequencer: str
) -> bytes:
    """A notification as MinIO's Kafka target publishes it (``event.Log`` in MinIO's code)."""
    encoded = key.replace(" ", "+")  # S3 records carry keys URL-encoded
    record = {
        "eventVersion": "2.0",
        "eventSource": "minio:s3",
        "awsRegion": "",
        "eventTime": "2026-11-29T10:00:00.000Z",
        "eventName": event,
        "userIdentity": {"principalId": "deerflow"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "Config",
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": {
                "key": encoded,
                "size": size,
                "eTag": etag,
                "contentType": "text/csv",
                "sequencer": sequencer,
            },
        },
    }
    return orjson.dumps({"EventName": event, "Key": f"{bucket}/{key}", "Records": [record]})


@pytest.fixture
async def served_stack_app(
    kafka_url: str,
    moto_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[tuple[str, str]]:
    """compose/app.py under ``serve`` on Kafka, configured as the stack configures it."""
    topic = unique_name("minio-events")
    for name, value in {
        "DEERFLOW_PREFIX": unique_name("stack").replace("-", ""),
        "MINIO_EVENTS_TOPIC": topic,
        "DEERFLOW_CONFIG": str(COMPOSE / "secrets" / "deerflow.example.toml"),
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("DEERFLOW_API_KEYS", raising=False)
    workflows, _ = load_module_workflows(str(COMPOSE / "app.py"))
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    task = asyncio.create_task(
        serve(workflows, store=kafka_url, port=0, stop=stop, on_ready=ready.set_result)
    )
    try:
        either: set[asyncio.Future[Any]] = {ready, task}
        await asyncio.wait(either, timeout=60, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()  # serve failed: raise why
        yield ready.result(), topic
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


@pytest.mark.kafka
@pytest.mark.s3
async def test_the_stack_app_starts_one_run_per_upload_and_per_order(
    served_stack_app, kafka_url, kafka_bootstrap, moto_endpoint
):
    url, topic = served_stack_app
    key = tomllib.loads((COMPOSE / "secrets" / "deerflow.example.toml").read_text())["gateway"][
        "api_keys"
    ][0]
    s3 = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    s3.create_bucket(Bucket="uploads")
    put = s3.put_object(Bucket="uploads", Key="incoming/day 1.csv", Body=b"id\n1\n2\n")
    created = minio_notification(
        "uploads",
        "incoming/day 1.csv",
        7,
        put["ETag"].strip('"'),
        "s3:ObjectCreated:Put",
        "18A1B2C3D4E5F601",
    )
    removed = minio_notification(
        "uploads", "incoming/old.csv", 0, "", "s3:ObjectRemoved:Delete", "18A1B2C3D4E5F602"
    )
    async with AIOKafkaProducer(bootstrap_servers=kafka_bootstrap) as producer:
        for value in (created, created, removed):  # MinIO delivers at least once
            await producer.send_and_wait(topic, value)

    order = {"order_id": "o-7", "items": ["book", "lamp"], "amount": 42.5}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/hooks/orders", json=order) as refused:
            assert refused.status == 401
        async with http.post(
            f"{url}/hooks/orders", json={"order_id": "o-8", "items": []}, headers={"X-API-Key": key}
        ) as invalid:
            assert invalid.status == 422
        answers = []
        for _ in range(2):  # a retried request with the same Idempotency-Key: the same run
            async with http.post(
                f"{url}/hooks/orders",
                json=order,
                headers={"Authorization": f"Bearer {key}", "Idempotency-Key": "o-7"},
            ) as accepted:
                assert accepted.status == 202
                answers.append((await accepted.json())["run_id"])
        assert answers[0] == answers[1]

    async with Engine(kafka_url, orchestrate=False, work=False) as reader:
        ingest = await finished(reader, "object_ingest")
        orders = await finished(reader, "order_intake")
    assert len(ingest) == 1 and len(orders) == 1
    assert ingest[0].status == "completed"
    assert ingest[0].output == {"object": "s3://uploads/incoming/day 1.csv", "bytes": 7, "lines": 3}
    assert orders[0].status == "completed" and orders[0].run_id == answers[0]
    assert orders[0].output == {
        "order_id": "o-7",
        "amount": 42.5,
        "reservations": [f"{answers[0]}/book", f"{answers[0]}/lamp"],
    }


async def finished(engine: Engine, workflow: str, within: float = 60.0) -> list[Any]:
    """The workflow's runs once at least one exists and all have ended (then a little more
    time for a duplicate to show up, which it must not)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        runs = await engine.list_runs(workflow=workflow)
        if runs and all(r.done for r in runs):
            await asyncio.sleep(1.0)
            return await engine.list_runs(workflow=workflow)
        await asyncio.sleep(0.1)
    raise AssertionError(f"no finished {workflow} run within {within}s")
