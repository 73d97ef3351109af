"""What shows a run waiting for its gate: its metrics, the CLI's run list (``--status queued``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from pathlib import Path

import aiohttp

from deerflow import Engine
from deerflow.connectors import WebhookGateway
from deerflow.errors import RunNotFound
from deerflow.observability.metrics import EngineMetrics
from deerflow.web import mount
from tests.flow.apps import limited, rated
from tests.flow.checks import until_admitted, until_status
from tests.logs import history


def _scraped(metrics: EngineMetrics) -> str:
    return metrics.render().decode()


async def test_metrics_count_what_the_gates_decided_and_the_runs_queued_now(store):
    wf = limited("metered", limit=1, seconds=0.05)
    dropping = rated("metered_drop", limit=1, period="1h", on_excess="drop")
    async with Engine(store, [wf, dropping]) as engine:
        metrics = EngineMetrics(engine)
        await metrics.start()
        try:
            first = await engine.start(wf, params={"customer": "c", "seconds": 5.0})
            await until_admitted(engine, first)
            rest = [await engine.start(wf, params={"customer": "c"}) for _ in range(2)]
            queued_line = 'deerflow_flow_queued{workflow="metered"} 2.0'
            deadline = time.monotonic() + 30
            while queued_line not in _scraped(metrics):
                assert time.monotonic() < deadline, _scraped(metrics)
                await asyncio.sleep(0.05)
            drops = [await engine.start(dropping, params={"customer": "c"}) for _ in range(3)]
            await asyncio.gather(*(r.result(timeout=60) for r in [first, *rest, *drops]))
            await engine.index.sync()
            text = _scraped(metrics)
        finally:
            await metrics.stop()
    assert 'deerflow_flow_runs_total{decision="queued",workflow="metered"} 3.0' in text
    assert 'deerflow_flow_runs_total{decision="admitted",workflow="metered"} 3.0' in text
    assert 'deerflow_flow_runs_total{decision="dropped",workflow="metered_drop"} 2.0' in text
    assert 'deerflow_runs_finished_total{status="dropped",workflow="metered_drop"} 2.0' in text
    assert 'deerflow_flow_queued{workflow="metered"}' not in text  # none waits any more


async def test_the_cli_lists_queued_runs_and_shows_what_one_waits_for(tmp_path, monkeypatch):
    monkeypatch.setenv("DEERFLOW_PREFIX", "clif")
    store = f"sqlite:///{tmp_path / 'cli.db'}"
    wf = limited("cli_limited", limit=1, seconds=0.05)
    async with Engine(store, [wf]) as engine:
        first = await engine.start(wf, params={"customer": "acme", "seconds": 3600})
        await until_admitted(engine, first)
        waiting = await engine.start(wf, params={"customer": "acme"})
        await until_status(waiting, "queued")
        code, listed, err = await _cli("runs", "list", "--status", "queued", "--json", store=store)
        assert code == 0, err
        table_code, table, _ = await _cli("runs", "list", "--status", "queued", store=store)
        show_code, shown, _ = await _cli("runs", "show", waiting.run_id, "--json", store=store)
        await engine.cancel(first.run_id)
        await engine.cancel(waiting.run_id)
    rows = json.loads(listed)
    assert [(r["run_id"], r["status"]) for r in rows] == [(waiting.run_id, "queued")]
    assert table_code == 0 and waiting.run_id[:8] in table and "queued" in table
    assert first.run_id[:8] not in table
    flow = json.loads(shown)["result"]["flow"]
    assert show_code == 0
    assert (flow["key"], flow["status"]) == ("cli_limited/acme", "queued")


async def test_a_run_is_queued_from_its_request_until_its_gate_admits_it(store):
    wf = limited("from_start", limit=1, seconds=0.05)
    async with Engine(store, [wf]) as engine:
        holder = await engine.start(wf, params={"customer": "c", "seconds": 30.0})
        await until_status(holder, "running")  # the holder takes the key's one slot
        waiting = await engine.start(wf, params={"customer": "c"})
        seen: dict[str, list[str]] = {holder.run_id: ["running"], waiting.run_id: []}
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:  # from its request on, for a second
            for run in (waiting, holder):
                with contextlib.suppress(RunNotFound):  # not in the run index yet
                    status = (await run.status()).status
                    if not seen[run.run_id] or seen[run.run_id][-1] != status:
                        seen[run.run_id].append(status)
            await asyncio.sleep(0.01)
        listed = await engine.list_runs(workflow="from_start", status="queued")
        # the CLI reads the store from its own process (not an in-memory one)
        cli = (
            None
            if store.startswith("memory")
            else await _cli("runs", "list", "--json", store=store)
        )
        firsts = [(await history(engine, run.run_id))[:2] for run in (holder, waiting)]
        await engine.cancel(holder.run_id)
        await engine.cancel(waiting.run_id)
    # the waiting run never showed "running", not even before its owner first decided it
    assert seen[waiting.run_id] == ["queued"]
    assert seen[holder.run_id] == ["running"]
    assert [r.run_id for r in listed] == [waiting.run_id]
    if cli is not None:
        code, out, err = cli
        rows = {r["run_id"]: r["status"] for r in json.loads(out)} if code == 0 else err
        assert rows == {holder.run_id: "running", waiting.run_id: "queued"}
    for requested, queued in firsts:  # one write: no moment it could show "running"
        assert (requested.type, queued.type, queued.ts) == (
            "RunRequested",
            "RunQueued",
            requested.ts,
        )


async def _cli(*args: str, store: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "deerflow",
        *args,
        "--store",
        store,
        env={**os.environ, "PYTHONPATH": str(Path.cwd()), "COLUMNS": "200"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_the_dashboard_says_why_a_run_waits(tmp_path):
    wf = limited("dash_limited", limit=1, seconds=0.05)
    async with Engine(f"sqlite:///{tmp_path / 'ui.db'}", [wf]) as engine:
        gateway = WebhookGateway(engine, port=0)
        mount(gateway.app, engine)
        await engine.add_service(gateway)
        first = await engine.start(wf, params={"customer": "acme", "seconds": 3600})
        await until_admitted(engine, first)
        waiting = await engine.start(wf, params={"customer": "acme"})
        await until_status(waiting, "queued")
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{gateway.url}/ui/runs/{waiting.run_id}") as reply:
                page = await reply.text()
                assert reply.status == 200
            async with session.get(f"{gateway.url}/ui/?status=queued") as reply:
                listing = await reply.text()
                assert reply.status == 200
        await engine.cancel(first.run_id)
        await engine.cancel(waiting.run_id)
    assert "waits for a slot of <code>dash_limited/acme</code>" in page
    assert f'data-run-id="{waiting.run_id}" data-status="queued"' in listing
    assert first.run_id not in listing
