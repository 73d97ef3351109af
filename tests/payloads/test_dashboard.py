"""The dashboard shows a large value cut short, with its size and a link to the whole of it."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from deerflow.payloads import reference
from tests.cli.test_cli_run import deerflow
from tests.payloads.bigapp import BIG
from tests.payloads.kept import kept_records
from tests.web.conftest import (  # noqa: F401 - the web suite's isolation and chromium
    Process,
    browser,
    deploy,
    isolated,
    process_env,
)


async def test_a_large_input_shows_its_size_and_links_to_the_whole_value(isolated: Path):
    store = f"sqlite:///{isolated / 'web.db'}"
    rows = ["r" * 1000] * 1000  # about 1 MB: kept in the blob store beside the file
    async for served in deploy(store, isolated):
        wf = served.engine.registry.get("validate_batch")
        assert wf is not None
        handle = await served.engine.start(wf, input=rows)
        assert (await handle.result(timeout=60)).output == {"valid": 1000}
        async with served.session.get(f"{served.url}/ui/runs/{handle.run_id}") as reply:
            assert reply.status == 200
            page = await reply.text()
        assert "… (1.0 MB in all)" in page  # the size of the value cut short
        [link] = re.findall(r'<a class="whole" href="([^"]+)">', page)
        assert link == f"/api/runs/{handle.run_id}"
        whole = await served.get(link)
        assert whole["run"]["input"] == rows
        refs = [reference(r) for r in await kept_records(served.engine)]
    assert any(ref is not None and ref.size > 1_000_000 for ref in refs)


def test_in_chromium_a_5mb_output_shows_its_size_and_its_link_gives_it_whole(
    isolated: Path,
    browser: Any,
):
    (isolated / "big.py").write_text(BIG)
    store = f"sqlite:///{isolated / 'big.db'}"
    env = {"DEERFLOW_PREFIX": os.environ["DEERFLOW_PREFIX"]}  # the one `deerflow ui` reads
    done = deerflow("run", "big.py", "--store", store, "--quiet", cwd=isolated, env=env)
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.split()[2]
    assert any(p.stat().st_size > 5 * 1024 * 1024 for p in (isolated / "big.db.blobs").rglob("*"))

    ui = Process(["ui", "--store", store, "--port", "0"], process_env(isolated))
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.goto(f"{ui.url}/ui/runs/{run_id}")
        row = page.locator('tr[data-task="render"]')
        row.wait_for(timeout=30_000)
        shown = row.locator("pre.json").inner_text()
        assert shown.endswith("… (5.2 MB in all)")  # the JSON string's size
        link = row.locator("a.whole")
        assert link.inner_text() == "the whole value (JSON)"
        href = link.get_attribute("href")
        assert href == f"/api/runs/{run_id}"
        whole = page.request.get(f"{ui.url}{href}").json()
        assert whole["run"]["tasks"]["render"]["output"] == "x" * (5 * 1024 * 1024)
        assert page.locator('tr[data-task="measure"] pre.json').inner_text() == "5242880"
        assert page.locator('tr[data-task="measure"] a.whole').count() == 0  # small: no link
    finally:
        context.close()
        ui.stop()
