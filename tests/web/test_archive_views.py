"""An archived run, its records gone from the store, as the API, the dashboard and the CLI
show it; retrying it is refused with the reason."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from deerflow import Engine
from tests.engine.test_archive import ROOT, _records_of, _run
from tests.engine.test_runindex import orders
from tests.web.conftest import deploy


async def _cli(store: str, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "deerflow",
        *args,
        "--store",
        store,
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"},
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_an_archived_run_is_shown_everywhere_and_its_retry_refused(isolated: Path):
    store = f"sqlite:///{isolated / 'events.db'}"
    done, failed = await _run(store, [21], bad=1)
    archive = isolated / "archive"
    async with Engine(store, archive=f"file://{archive}", retention=0) as engine:
        assert engine.archiver is not None
        assert await engine.archiver.archive_once() == (2, 2)
    assert _records_of(store, done) <= 1  # a partition's last record stays
    location = f"file://{archive}/runs/{done}.jsonl.gz"

    async for app in deploy(store, isolated):
        detail = await app.get(f"/api/runs/{done}")
        assert detail["archived"] == location
        assert detail["run"]["status"] == "completed" and detail["run"]["output"] == {"total": 42}
        assert detail["run"]["tasks"]["price"]["output"] == 42
        history = await app.get(f"/api/runs/{done}/history")
        kinds = [e["type"] for e in history["events"]]
        assert kinds[0] == "RunRequested" and kinds[-1] == "RunCompleted"
        refused = await app.post(f"/api/runs/{failed}/retry", status=409)
        assert "is archived" in refused["error"] and "cannot be retried" in refused["error"]
        async with app.session.get(f"{app.url}/ui/runs/{done}") as page:
            text = await page.text()
            assert page.status == 200
            assert 'class="badge st-archived">archived</span>' in text and location in text
        assert (await app.get(f"/api/runs/{failed}"))["run"]["status"] == "failed"

    code, out, err = await _cli(store, "runs", "show", done)
    assert code == 0, err
    assert f"archived: {location}" in out and "completed" in out
    code, out, err = await _cli(store, "runs", "retry", failed)
    assert code == 2 and "Traceback" not in err
    lines = (out + err).strip().splitlines()
    assert len(lines) == 1 and f"run {failed} is archived" in lines[0], out + err


async def test_starting_an_archived_run_id_again_is_a_duplicate(isolated: Path):
    store = f"sqlite:///{isolated / 'events.db'}"
    (done,) = await _run(store, [3])
    async with Engine(store, archive=str(isolated / "a"), retention=0) as engine:
        assert engine.archiver is not None
        await engine.archiver.archive_once()
    left = _records_of(store, done)
    async with Engine(store, [orders()]) as engine:
        handle = await engine.start("orders", input={"customer": "c", "amount": 9}, run_id=done)
        assert handle.run_id == done
        result = await engine.get_run(done)
        assert result.output == {"total": 6}  # the archived run, not a second one
        assert _records_of(store, done) == left  # nothing appended for it
