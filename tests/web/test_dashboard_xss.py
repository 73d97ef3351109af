"""Markup in run data never runs on the dashboard: scripts, attribute breakouts, ``javascript:``
URLs and unicode tricks go into a workflow's description, a run id, params, outputs, errors,
tracebacks, trigger payloads (body, headers, query), trigger names, history event types and
dead letters; every dashboard page is loaded in chromium, nothing executes (no flag set, no
dialog, no inline-script violation, no injected element) and the text is shown as text."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from deerflow import Engine, _codec
from deerflow.cli._loader import load_module_workflows
from deerflow.log.base import Message
from tests.web.apps.xss_app import ALL, PAYLOADS
from tests.web.conftest import Process, serving

APP = Path(__file__).parent / "apps" / "xss_app.py"
RUN_ID = 'xss-"><img src=x onerror="window.__xss=10">'
WATCH = """
window.__xss = 0;
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__violations.push(e.violatedDirective + " " + (e.sample || ""));
});
"""
#: Elements and attributes that only an injection would put on a page.
INJECTED = (
    'img[src="x"], svg[onload], [onerror], [onload], a[href^="javascript:"], script:not([src])'
)


@pytest.fixture
def xss_server(isolated: Path) -> Iterator[tuple[Process, str]]:
    """``deerflow serve`` of the probe workflow on an SQLite store."""
    store = f"sqlite:///{isolated / 'xss.db'}"
    with serving(APP, store, isolated) as proc:
        yield proc, store


def api(url: str, path: str) -> Any:
    with urllib.request.urlopen(url + "/api" + path, timeout=10) as reply:
        return json.load(reply)


def wait_failed(url: str, run_id: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if api(url, "/runs/" + quote(run_id, safe=""))["run"]["status"] == "failed":
            return
        time.sleep(0.1)
    pytest.fail(f"run {run_id!r} did not fail")


def trigger_by_webhook(url: str) -> str:
    body = json.dumps({"title": ALL, "link": "javascript:window.__xss=11", "items": PAYLOADS})
    request = urllib.request.Request(
        f"{url}/hooks/xss?q={quote(ALL)}",
        data=body.encode(),
        method="POST",
        headers={
            "X-Evil": '"><script>window.__xss=12</script>',
            "Idempotency-Key": PAYLOADS[0] + PAYLOADS[1],
        },
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        return str(json.load(reply)["run_id"])


async def seed(store: str) -> None:
    """A run with a markup id, params and trigger labels; an event of a markup type; a letter."""
    workflows, _ = load_module_workflows(str(APP))
    async with Engine(store, workflows, orchestrate=False, work=False) as engine:
        await engine.start_run(
            "xss_probe",
            run_id=RUN_ID,
            params={ALL: PAYLOADS},
            trigger={"trigger": PAYLOADS[1], "type": PAYLOADS[0], "received_at": time.time()},
        )
        event = {"type": PAYLOADS[0], "run_id": RUN_ID, "id": "xss-event", "note": ALL}
        letter = {"reason": ALL, "source": PAYLOADS[2], "trigger": PAYLOADS[1], "value": ALL}
        await engine.log.append(
            [
                Message(topic=engine.topics.history, key=RUN_ID, value=_codec.dumps(event)),
                Message(topic=engine.topics.dlq, key=PAYLOADS[3], value=_codec.dumps(letter)),
            ]
        )


def inspect(page: Any, url: str, *, live: bool = False) -> str:
    """Load ``url``; assert nothing injected ran; the page's text."""
    page.goto(url)
    page.wait_for_load_state("load")
    if live:  # let dashboard.js replace the live regions once (innerHTML from a fresh page)
        page.wait_for_selector("body[data-refreshed]", state="attached", timeout=15_000)
    assert page.evaluate("window.__xss") == 0, url
    assert page.evaluate("window.__violations") == [], url
    assert page.locator(INJECTED).count() == 0, url
    return str(page.inner_text("body"))


def test_markup_in_run_data_is_shown_as_text_on_every_page(browser, xss_server):
    proc, store = xss_server
    url = proc.url
    hooked = trigger_by_webhook(url)
    with ThreadPoolExecutor(1) as pool:  # its own event loop, apart from Playwright's
        pool.submit(asyncio.run, seed(store)).result(timeout=30)
    wait_failed(url, hooked)
    wait_failed(url, RUN_ID)

    context = browser.new_context()
    context.add_init_script(WATCH)
    page = context.new_page()
    dialogs: list[str] = []
    errors: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))  # type: ignore[func-returns-value]
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        text = inspect(page, url + "/ui/", live=True)
        assert PAYLOADS[1] in text  # the markup trigger name, in the trigger column

        reflected = "&".join(
            f"{name}={quote(ALL)}" for name in ("workflow", "trigger", "status", "flash")
        )
        inspect(page, f"{url}/ui/?{reflected}&since={quote(PAYLOADS[0])}")

        text = inspect(page, f"{url}/ui/runs/{quote(hooked)}?error={quote(ALL)}")
        for shown in (PAYLOADS[0], PAYLOADS[1], "javascript:window.__xss=11", PAYLOADS[6]):
            assert shown in text, shown  # output, error, trigger body, flash: as text
        page.locator("#task-boom summary").first.click()
        assert "NonRetryableError" in page.locator("#task-boom").inner_text()
        assert page.evaluate("window.__xss") == 0

        text = inspect(page, f"{url}/ui/runs/{quote(RUN_ID, safe='')}")
        assert RUN_ID in text and PAYLOADS[3] not in page.content().split("<body")[0]
        assert page.locator(f'table.history tr[data-type="{PAYLOADS[0]}"]').count() == 1

        text = inspect(page, f"{url}/ui/runs/{quote(PAYLOADS[1], safe='')}")
        assert f"no run {PAYLOADS[1]!r}" in text

        text = inspect(page, url + "/ui/dlq")
        assert PAYLOADS[2] in text and PAYLOADS[4] in text
        text = inspect(page, url + "/ui/triggers", live=True)
        assert PAYLOADS[1] in text
    finally:
        context.close()
    assert dialogs == [] and errors == []
    described = api(url, "/workflows")["workflows"][0]["description"]
    assert described == ALL  # the API gives it back as data
