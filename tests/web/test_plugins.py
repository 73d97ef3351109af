"""Web plugins over real HTTP: what a plugin adopted by an engine adds to that engine's
dashboard and API (run panels, routes, trigger probes, the transition handler), and that the
module-level ``register_*`` functions still add to every engine."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from deerflow import Engine, Workflow
from deerflow.connectors import ApiKeys
from deerflow.events import WebhookEvent
from deerflow.web import (
    WebPlugin,
    mount,
    register_run_panel,
    request_engine,
)
from deerflow.web._extend import REGISTERED, RunPanel, TriggerProbe
from deerflow.web._runs import RunDetail
from tests.services import unique_name


def priced() -> Workflow:
    wf = Workflow(name="priced")
    wf.add_trigger(WebhookEvent(path="/hooks/price"))  # listed by /api/triggers, never served

    @wf.task(id="price")
    def price(context: Any) -> int:
        return 42

    return wf


def price_panel(detail: RunDetail) -> str | None:
    output = detail.result.tasks["price"].output if "price" in detail.result.tasks else None
    return None if output is None else f"<p class='price'>the price is {output}</p>"


async def price_probe(engine: Engine, name: str) -> dict[str, Any]:
    return {"probed_by": "pricing"}


async def runs_by_workflow(request: web.Request) -> web.StreamResponse:
    engine = request_engine(request)
    return web.json_response({"workflows": sorted(wf.name for wf in engine.registry)})


class Pricing(WebPlugin):
    def run_panels(self) -> Mapping[str, RunPanel]:
        return {"Pricing": price_panel}

    def routes(self) -> Sequence[web.AbstractRouteDef]:
        return [web.get("/pricing/workflows", runs_by_workflow)]

    def trigger_probes(self) -> Sequence[TriggerProbe]:
        return [price_probe]


class Served:
    def __init__(self, url: str, engine: Engine, session: aiohttp.ClientSession) -> None:
        self.url, self.engine, self.session = url, engine, session

    async def text(self, path: str, status: int = 200, **headers: str) -> str:
        async with self.session.get(self.url + path, headers=headers) as reply:
            assert reply.status == status, await reply.text()
            return await reply.text()

    async def json(self, path: str, **headers: str) -> Any:
        async with self.session.get(self.url + path, headers=headers) as reply:
            assert reply.status == 200, await reply.text()
            return await reply.json()


@asynccontextmanager
async def serving(engine: Engine, keys: list[str] | None = None) -> AsyncIterator[Served]:
    app = web.Application()
    mount(app, engine, api_keys=ApiKeys(keys or []))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = next(a for a in runner.addresses if isinstance(a, tuple))[1]
    try:
        async with aiohttp.ClientSession() as session:
            yield Served(f"http://127.0.0.1:{port}", engine, session)
    finally:
        await runner.cleanup()


async def test_a_plugin_given_to_the_engine_adds_a_panel_a_route_and_a_probe():
    wf = priced()
    async with Engine(f"memory://{unique_name('web')}", [wf], plugins=[Pricing()]) as engine:
        result = await (await engine.start(wf)).result(timeout=30)
        async with serving(engine, keys=["k1"]) as served:
            page = await served.text(f"/ui/runs/{result.run_id}", Authorization="Bearer k1")
            routed = await served.json("/api/pricing/workflows", Authorization="Bearer k1")
            # A plugin's route is an API route: it needs a key like the others.
            await served.text("/api/pricing/workflows", status=401)
    assert "<h2>Pricing</h2><p class='price'>the price is 42</p>" in page
    assert routed == {"workflows": ["priced"]}


async def test_a_plugin_a_workflow_carries_reaches_the_dashboard_and_only_its_engine_s():
    carried = priced()
    carried.plugins.append(Pricing())
    async with (
        Engine(f"memory://{unique_name('web')}", [carried]) as with_plugin,
        Engine(f"memory://{unique_name('web')}", [priced()]) as without,
    ):
        first = await (await with_plugin.start(carried)).result(timeout=30)
        second = await (await without.start("priced")).result(timeout=30)
        async with serving(with_plugin) as served:
            shown = await served.text(f"/ui/runs/{first.run_id}")
            probed = await served.json("/api/triggers")
        async with serving(without) as served:
            plain = await served.text(f"/ui/runs/{second.run_id}")
            await served.text("/api/pricing/workflows", status=404)
            unprobed = await served.json("/api/triggers")
    assert "the price is 42" in shown
    assert "the price is" not in plain
    (row,) = probed["triggers"]
    assert row["name"] == "priced.webhook.hooks.price" and row["probed_by"] == "pricing"
    (row,) = unprobed["triggers"]
    assert "probed_by" not in row


async def test_a_panel_registered_the_old_way_shows_on_every_engine_s_run_pages(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setattr(REGISTERED, "panels", {})  # process-wide: undone after the test
    register_run_panel("Legacy pricing", price_panel)
    wf = priced()
    async with Engine(f"memory://{unique_name('web')}", [wf]) as engine:
        result = await (await engine.start(wf)).result(timeout=30)
        async with serving(engine) as served:
            page = await served.text(f"/ui/runs/{result.run_id}")
    assert "<h2>Legacy pricing</h2><p class='price'>the price is 42</p>" in page
