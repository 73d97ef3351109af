"""A run failed by an exception names its type wherever it is shown: a webhook body without
``lines`` fails ``price`` with ``KeyError: 'lines'`` in the API's list and detail and on the
dashboard's pages, read from a real ``deerflow serve`` over HTTP."""

from __future__ import annotations

import json
import time
import urllib.request
from html import unescape
from pathlib import Path

import pytest

from tests.web.conftest import serving

PRICING = """
from deerflow import Workflow
from deerflow.events import WebhookEvent

wf = Workflow(name="pricing")
wf.add_trigger(WebhookEvent(path="/hooks/orders"))

@wf.task(id="price", retries=1, retry_delay=0)
def price(context):
    return sum(line["total"] for line in context.trigger_event.body["lines"])
"""

CAUSE = "task 'price' failed: KeyError: 'lines'"


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return str(reply.read().decode())


def post(url: str, body: bytes) -> dict[str, str]:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        assert reply.status == 202
        return dict(json.load(reply))


def test_a_key_error_is_named_in_the_api_and_on_the_dashboard(isolated: Path):
    app = isolated / "pricing.py"
    app.write_text(PRICING)
    with serving(app, f"sqlite:///{isolated / 'p.db'}", isolated) as served:
        run_id = post(f"{served.url}/hooks/orders", b'{"customer": "c-1"}')["run_id"]
        deadline = time.monotonic() + 60
        while (run := json.loads(get(f"{served.url}/api/runs/{run_id}"))["run"])[
            "status"
        ] != "failed":
            if time.monotonic() > deadline:
                pytest.fail(f"run {run_id} is {run['status']} after 60s")
            time.sleep(0.1)
        assert run["error"] == CAUSE
        listed = json.loads(get(f"{served.url}/api/runs?status=failed"))["runs"]
        assert [(r["run_id"], r["error"]) for r in listed] == [(run_id, CAUSE)]
        detail = json.loads(get(f"{served.url}/api/runs/{run_id}"))
        last = detail["attempts"]["price"][-1]
        assert (last["error_type"], last["error"]) == ("KeyError", "KeyError: 'lines'")
        assert len(detail["attempts"]["price"]) == 2  # retried once, failed the same way
        assert 'pricing.py", line 10, in price' in last["traceback"]
        page = unescape(get(f"{served.url}/ui/runs/{run_id}"))
        assert CAUSE in page
        runs_page = unescape(get(f"{served.url}/ui/"))
        assert "KeyError: 'lines'" in runs_page
