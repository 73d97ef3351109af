"""The dashboard in a real headless browser (Debian's chromium driven by Playwright), against
``deerflow serve`` and ``deerflow ui`` running as processes. Screenshots go to test-artifacts/."""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest

from deerflow import Engine
from tests.engine.test_archive import _run
from tests.web.conftest import ROOT, Process, process_env

ARTIFACTS = ROOT / "test-artifacts"
WAIT_MS = 30_000


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page; JavaScript errors fail the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.on("dialog", lambda dialog: dialog.accept())  # "Cancel this run?" -> yes
    yield tab
    context.close()
    assert not errors, errors


def shoot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def webhook(url: str, path: str, key: str) -> str:
    request = urllib.request.Request(
        url + path, data=b"{}", method="POST", headers={"Idempotency-Key": key}
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        return str(json.load(reply)["run_id"])


def wait_status(url: str, run_id: str, status: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{url}/api/runs/{run_id}", timeout=10) as reply:
            if json.load(reply)["run"]["status"] == status:
                return
        time.sleep(0.1)
    pytest.fail(f"run {run_id} is not {status} after {timeout}s")


def node(page: Any, task: str) -> Any:
    return page.locator(f'svg.dag g.node[data-task="{task}"]')


def test_runs_appear_live_and_a_failed_run_is_drawn_and_retried(served, page, isolated):
    proc, _ = served
    url = proc.url
    failed = webhook(url, "/hooks/etl", "first")
    wait_status(url, failed, "failed")

    page.goto(url + "/ui/")
    page.wait_for_selector(f'tr[data-run-id="{failed}"][data-status="failed"]')
    second = webhook(url, "/hooks/etl", "second")  # arrives while the page is open
    page.wait_for_selector(f'tr[data-run-id="{second}"]', timeout=WAIT_MS)
    page.select_option("#f-status", "failed")
    page.select_option("#f-workflow", "etl")
    page.click("#run-filters button[type=submit]")
    page.wait_for_selector(f'tr[data-run-id="{failed}"]')
    statuses = page.locator("table.runs tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.status)"
    )
    assert statuses and set(statuses) == {"failed"}

    page.click(f'a[href="/ui/runs/{failed}"]')
    assert node(page, "fragile").get_attribute("data-status") == "failed"
    assert node(page, "report").get_attribute("data-status") == "skipped"
    assert node(page, "square").locator("rect.child.st-completed").count() == 5
    assert node(page, "validate").locator("a.child-run").count() == 1
    assert page.locator("svg.dag path.edge").count() == 4
    page.locator("#task-fragile summary").first.click()
    assert "refused the batch" in page.locator("#task-fragile").inner_text()
    assert page.locator('table.history tr[data-type="RunFailed"]').count() == 1
    shoot(page, "dashboard-failed-run.png")

    (isolated / "fixed").touch()
    page.click("text=Retry from failed task")
    page.wait_for_selector("p.flash >> text=Retry 1 requested")
    page.wait_for_selector(
        'svg.dag g.node[data-task="report"][data-status="completed"]', timeout=WAIT_MS
    )
    assert node(page, "fragile").locator("text=2 attempts").count() == 1
    shoot(page, "dashboard-retried-run.png")

    node(page, "validate").locator("a.child-run").click()
    page.wait_for_selector(f'dl.facts a[href="/ui/runs/{failed}"]')  # the parent run link


def test_a_running_run_is_cancelled_and_deerflow_ui_shows_the_same_store(served, page, isolated):
    proc, store = served
    url = proc.url
    running = webhook(url, "/hooks/wait", "wait-1")
    wait_status(url, running, "running")
    page.goto(f"{url}/ui/runs/{running}")
    page.wait_for_selector(
        'svg.dag g.node[data-task="wait"][data-status="running"]', timeout=WAIT_MS
    )
    page.click("text=Cancel run")
    page.wait_for_selector("dl.facts .badge.st-cancelled", timeout=WAIT_MS)
    assert node(page, "after").get_attribute("data-status") == "skipped"
    (isolated / "release").touch()

    ui = Process(["ui", "--store", store, "--port", "0"], process_env(isolated))
    try:
        page.goto(ui.url + "/ui/")
        page.wait_for_selector(f'tr[data-run-id="{running}"][data-status="cancelled"]')
        page.goto(f"{ui.url}/ui/runs/{running}")
        note = page.locator("section.graph").inner_text()
        assert "Workflow not loaded here: dependencies are drawn from the shape" in note
        assert node(page, "wait").count() == 1
        # wait -> after, from the shape the run recorded, though this process lacks the app
        assert page.locator("svg.dag path.edge").count() == 1
        page.goto(ui.url + "/ui/dlq")
        page.wait_for_selector("text=No dead letters.")
        page.goto(ui.url + "/ui/triggers")
        page.wait_for_selector('tr[data-trigger="waiting.webhook.hooks.wait"]')
        page.goto(ui.url + "/ui/")
        shoot(page, "dashboard-runs.png")
    finally:
        ui.stop()


def test_an_archived_run_page_shows_its_history_and_the_archived_badge(page, isolated):
    store = f"sqlite:///{isolated / 'archived.db'}"

    async def run_and_archive() -> str:
        (done,) = await _run(store, [8])
        async with Engine(store, archive=str(isolated / "archive"), retention=0) as engine:
            assert engine.archiver is not None
            assert await engine.archiver.archive_once() == (1, 1)
        return done

    # Playwright's loop runs in this thread: the engine gets a thread of its own
    with ThreadPoolExecutor(1) as thread:
        done = thread.submit(asyncio.run, run_and_archive()).result()
    ui = Process(["ui", "--store", store, "--port", "0"], process_env(isolated))
    try:
        page.goto(f"{ui.url}/ui/runs/{done}")
        page.locator(".badge.st-archived").wait_for(timeout=WAIT_MS)
        facts = page.locator("dl.facts").inner_text()
        assert "archived" in facts and f"runs/{done}.jsonl.gz" in facts
        assert node(page, "ship").count() == 1  # the DAG, from the archived history
        shoot(page, "archived-run.png")
    finally:
        ui.stop()


def test_a_waiting_node_shows_what_it_waits_for_and_a_signal_from_the_form_resumes_it(served, page):
    proc, _ = served
    url = proc.url
    run_id = webhook(url, "/hooks/approval", "approval-1")
    page.goto(f"{url}/ui/runs/{run_id}")
    page.wait_for_selector('svg.dag g.node[data-task="go"][data-status="waiting"]', timeout=WAIT_MS)
    title = node(page, "go").locator("title").first.text_content()
    assert title is not None and title.startswith("wait for signal: waits for signal 'approve'")
    waits = page.locator('table.waits tr[data-wait="go"]').inner_text()
    assert "signal 'approve'" in waits
    [shown_deadline] = re.findall(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", waits)
    deadline = datetime.strptime(shown_deadline, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    assert 0 < deadline.timestamp() - time.time() <= 3600  # its 1 h timeout, begun just now
    assert page.locator("form.signal input[name=name]").input_value() == "approve"
    shoot(page, "dashboard-waiting-run.png")

    page.fill("form.signal input[name=data]", "{not json")
    page.click("text=Send signal")
    page.wait_for_selector("p.error >> text=data is not JSON")
    page.fill("form.signal input[name=data]", '{"by": "the dashboard"}')
    page.click("text=Send signal")
    page.wait_for_selector("p.flash >> text=Signal 'approve' sent.")
    page.wait_for_selector("dl.facts .badge.st-completed", timeout=WAIT_MS)
    assert node(page, "go").get_attribute("data-status") == "completed"
    assert page.locator("form.signal").count() == 0  # an ended run takes no signal
    with urllib.request.urlopen(f"{url}/api/runs/{run_id}", timeout=10) as reply:
        assert json.load(reply)["run"]["output"] == {"approved_by": "the dashboard"}


def test_a_node_waiting_for_an_event_shows_the_event_its_match_and_its_deadline(served, page):
    proc, _ = served
    url = proc.url
    request = urllib.request.Request(
        url + "/hooks/invoice",
        data=b'{"invoice_id": "inv-7"}',
        method="POST",
        headers={"Idempotency-Key": "invoice-1", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        run_id = str(json.load(reply)["run_id"])
    page.goto(f"{url}/ui/runs/{run_id}")
    waiting = 'svg.dag g.node[data-task="approval"][data-status="waiting"]'
    page.wait_for_selector(waiting, timeout=WAIT_MS)
    in_a_week = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 7 * 86400))
    awaited = "event InvoiceApproved where data.invoice_id = inv-7"
    title = node(page, "approval").locator("title").first.text_content()
    assert title is not None
    assert title.startswith(f"wait for event: waits for {awaited} until {in_a_week}")
    row = page.locator('table.waits tr[data-wait="approval"]')
    cells = row.locator("td").all_inner_texts()
    assert cells[:2] == ["approval", awaited] and cells[2].startswith(in_a_week)
    # The node's own line: the deadline's day too, a week away.
    sub = node(page, "approval").locator("text.sub").text_content()
    assert sub == f"waiting · until {cells[2][5:16]}"
    assert page.locator("form.signal").count() == 0  # no node of the run takes a signal
    task = page.locator('table.tasks tr[data-task="approval"]').inner_text()
    assert "waiting" in task
    shoot(page, "dashboard-waiting-for-event.png")


def test_a_schedule_is_paused_resumed_and_backfilled_from_its_page(served, page):
    proc, _ = served
    url = proc.url
    page.goto(url + "/ui/")
    page.click("nav >> text=Schedules")
    row = page.locator('tr[data-schedule="nightly-report"]')
    row.wait_for(timeout=WAIT_MS)
    assert "cron 0 3 * * * (Europe/Paris)" in row.inner_text()
    assert row.locator(".badge").inner_text() == "active"

    row.locator("text=Pause").click()
    page.wait_for_selector("text=nightly-report paused.", timeout=WAIT_MS)
    assert row.locator(".badge").inner_text() == "paused"
    with urllib.request.urlopen(f"{url}/api/schedules", timeout=10) as reply:
        assert json.load(reply)["schedules"][0]["paused"] is True

    row.locator('input[name="from"]').fill("2026-10-24T00:00")
    row.locator('input[name="to"]').fill("2026-10-26T00:00")
    row.locator('input[name="max_parallel"]').fill("1")
    row.locator("text=Backfill").click()
    page.wait_for_selector("text=Backfilling nightly-report: 2 ticks.", timeout=WAIT_MS)
    deadline = time.monotonic() + 30
    while "last backfill: 2 ticks, 2 runs (2 completed, 0 not)" not in row.inner_text():
        assert time.monotonic() < deadline, row.inner_text()
        time.sleep(0.2)
        page.reload()
    shoot(page, "dashboard-schedules.png")

    row.locator("text=Resume").click()
    page.wait_for_selector("text=nightly-report resumed.", timeout=WAIT_MS)
    assert row.locator(".badge").inner_text() == "active"
    page.goto(url + "/ui/?workflow=nightly")
    page.wait_for_selector('tr[data-status="completed"] >> nth=1', timeout=WAIT_MS)

    # The triggers page says when the schedule fires, not only that it is one.
    page.goto(url + "/ui/triggers")
    cells = page.locator('tr[data-trigger="nightly-report"] td').all_inner_texts()
    assert cells[1:5] == ["nightly", "schedule", "cron 0 3 * * * (Europe/Paris)", "2"]
    with urllib.request.urlopen(f"{url}/api/triggers", timeout=10) as reply:
        [listed] = [t for t in json.load(reply)["triggers"] if t["name"] == "nightly-report"]
    assert listed["listens_to"] == "cron 0 3 * * * (Europe/Paris)"
