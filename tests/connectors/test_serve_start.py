"""``deerflow serve`` as a new user meets it: what it answers while its consumer groups join
(all at once), what it prints once ready and when it stops, and which log lines it shows."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.connectors.serving import ROOT, Serving, get, write_app
from tests.services import kafka_broker, unique_name


@pytest.mark.kafka
def test_serve_on_kafka_joins_its_groups_at_once_and_answers_503_meanwhile(
    tmp_path: Path, kafka_bootstrap: str, cli_env: dict[str, str]
) -> None:
    groups = [unique_name("g") for _ in range(3)]
    app = write_app(
        tmp_path,
        "fanin",
        *(f"KafkaEvent(topic={unique_name('t')!r}, consumer_group={g!r})" for g in groups),
    )
    # Each join takes about half the session timeout on Tansu (3 s here): one after the other,
    # the engine's two groups and three triggers' would take at least 4 x 3 s.
    store = f"kafka://{kafka_bootstrap}?session_timeout_ms=6000&heartbeat_interval_ms=1000"
    keyed = dict(cli_env, DEERFLOW_API_KEYS="k")
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
def test_serve_interrupted_while_its_groups_join_stops_cleanly_and_says_so(
    tmp_path: Path, kafka_bootstrap: str, cli_env: dict[str, str]
) -> None:
    if kafka_broker() != "tansu":
        pytest.skip(
            "Apache Kafka joins a new group before the interrupt lands, so there is no join "
            "to interrupt; this path is exercised on Tansu, whose joins take seconds"
        )
    app = write_app(tmp_path, "w", f"KafkaEvent(topic={unique_name('t')!r})")
    store = f"kafka://{kafka_bootstrap}?session_timeout_ms=6000&heartbeat_interval_ms=1000"
    served = Serving([str(app), "--store", store, "--port", "0"], cli_env, tmp_path / "err")
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
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    app = write_app(tmp_path, "w", "WebhookEvent(path='/hook')")
    with app.open("a") as more:
        more.write("other = Workflow(name='other')\nother.task(id='t')(lambda context: None)\n")
    served = Serving([str(app), "--store", "memory://", "--port", "0"], cli_env, tmp_path / "err")
    url = served.line("deerflow serve: listening on ").rsplit(" ", 1)[1]
    assert served.line("serving ").startswith("serving 2 workflows, 1 trigger on memory://")
    assert served.line("dashboard: ") == (
        f"dashboard: {url}/ui/  API: {url}/api/  metrics: {url}/metrics"
    )
    assert served.line("webhook: ") == f"webhook: POST {url}/hook"
    assert get(f"{url}/api/runs")[0] == 200
    began = time.monotonic()
    assert served.interrupt() == 0
    took = time.monotonic() - began
    stopping, stopped = served.rest()[-2:]
    assert stopping == "stopping: draining triggers and tasks"
    assert re.fullmatch(r"stopped in [\d.]+s", stopped), stopped
    assert took < 5, f"serve took {took:.1f}s to stop with nothing to drain"


@pytest.mark.kafka
def test_the_libraries_log_lines_show_only_at_log_level_debug(
    tmp_path: Path, kafka_url: str, cli_env: dict[str, str]
) -> None:
    app = write_app(tmp_path, "w", f"KafkaEvent(topic={unique_name('t')!r})")
    served = Serving(
        [str(app), "--store", kafka_url, "--port", "0", "--log-level", "debug"],
        cli_env,
        tmp_path / "err",
    )
    served.line("deerflow serve: listening on ")
    assert served.interrupt() == 0
    assert "aiokafka" in served.errors()
    refused = subprocess.run(
        [sys.executable, "-m", "deerflow", "serve", str(app), "--log-level", "loud"],
        capture_output=True,
        text=True,
        env=cli_env,
        cwd=ROOT,
        check=False,
    )
    assert refused.returncode == 2 and "use one of debug, info, warning, error" in refused.stderr
