"""A large webhook body travels by reference and reaches the run's task whole."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import orjson

from deerflow import Engine, Workflow
from deerflow.connectors import WebhookGateway
from deerflow.events import WebhookEvent
from deerflow.payloads import reference
from tests.connectors.conftest import finished_runs, post
from tests.payloads.kept import kept_records


def measuring_workflow() -> Workflow:
    wf = Workflow(name="ingest")

    @wf.task(id="measure")
    def measure(context: Any) -> dict[str, Any]:
        items = context.trigger_event.body["items"]
        return {"items": len(items), "chars": sum(len(item) for item in items)}

    return wf


async def test_a_600kb_webhook_body_reaches_its_task_while_the_history_holds_a_reference(
    store: str, tmp_path: Path
) -> None:
    body = {"items": ["i" * 600] * 1000}
    async with Engine(store, [measuring_workflow()], blobs=f"file://{tmp_path}/b") as engine:
        gateway = WebhookGateway(engine, port=0)
        gateway.add_webhook("ingest", WebhookEvent(path="/ingest"))
        await engine.add_service(gateway)
        async with aiohttp.ClientSession() as http:
            status, _, reply = await post(http, f"{gateway.url}/ingest", data=orjson.dumps(body))
        assert status == 202, reply
        [run] = await finished_runs(engine, 1, within=60)
        assert run.status == "completed", run.error
        assert run.output == {"items": 1000, "chars": 600_000}
        kept = await kept_records(engine)
    assert max(len(r.value) for r in kept) < 256 * 1024
    refs = [ref for ref in map(reference, kept) if ref is not None]
    assert refs and refs[0].fields["type"] == "RunRequested"
