"""The webhook gateway: real aiohttp server on a free port, real HTTP requests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from pydantic import BaseModel

from deerflow import Engine
from deerflow.connectors import ApiKeys, WebhookGateway, sign
from deerflow.events import WebhookEvent
from tests.connectors.conftest import finished_runs, post, recording_workflow

KEY = "k-live-1234567890"
SECRETS = ("whsec-old", "whsec-new")


class Order(BaseModel):
    """The payload the schema-checked webhook accepts."""

    order_id: int
    amount: float


@pytest.fixture
async def gateway(engine: Engine) -> AsyncIterator[WebhookGateway]:
    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"hello": "dashboard"})

    gw = WebhookGateway(
        engine,
        port=0,
        api_keys=ApiKeys([KEY, "k-second"]),
        extra_routes=[web.get("/dashboard", hello)],
    )
    gw.add_webhook(
        "on_event", WebhookEvent(path="/trigger/pipeline", auth="api_key", max_body=2048)
    )
    gw.add_webhook(
        "on_event",
        WebhookEvent(path="/signed", auth="hmac", signing_secrets=SECRETS, name="signed"),
    )
    gw.add_webhook(
        "on_event",
        WebhookEvent(path="/orders", payload_schema=Order, delivery_id_header="X-Delivery"),
    )
    await engine.add_service(gw)
    yield gw


async def test_an_authorised_request_gets_202_after_the_run_is_durable_and_its_status(
    engine: Engine, gateway: WebhookGateway, http: aiohttp.ClientSession
) -> None:
    status, _, reply = await post(
        http,
        f"{gateway.url}/trigger/pipeline?source=ci",
        {"ref": "main"},
        headers={"X-API-Key": KEY, "Cookie": "s=1"},
    )
    assert status == 202
    run = await engine.get_run(reply["run_id"])  # already durable when 202 arrived
    assert run.workflow == "on_event"
    assert reply["status_url"] == f"{gateway.url}/runs/{reply['run_id']}"

    await finished_runs(engine, 1)
    async with http.get(reply["status_url"], headers={"Authorization": f"Bearer {KEY}"}) as got:
        assert got.status == 200
        state = await got.json()
    assert state["status"] == "completed"
    event = state["output"]["event"]
    assert event["type"] == "webhook" and event["path"] == "/trigger/pipeline"
    assert event["method"] == "POST" and event["body"] == {"ref": "main"}
    assert event["query"] == {"source": "ci"}
    assert orjson.loads(event["text"]) == {"ref": "main"}
    lowered = {k.lower() for k in event["headers"]}
    assert "x-api-key" not in lowered and "cookie" not in lowered
    assert KEY not in orjson.dumps(state).decode()


async def test_missing_or_wrong_api_keys_get_401_and_start_nothing(
    engine: Engine, gateway: WebhookGateway, http: aiohttp.ClientSession
) -> None:
    url = f"{gateway.url}/trigger/pipeline"
    for headers in (
        {},
        {"X-API-Key": "nope"},
        {"Authorization": "Bearer nope"},
        {"Authorization": f"Basic {KEY}"},
    ):
        status, reply_headers, _ = await post(http, url, {}, headers=headers)
        assert status == 401, headers
        assert reply_headers.get("WWW-Authenticate") == "Bearer"
    status, _, _ = await post(http, url, {}, headers={"Authorization": "Bearer k-second"})
    assert status == 202
    async with http.get(f"{gateway.url}/runs/whatever") as got:
        assert got.status == 401
    assert len(await engine.list_runs()) == 1


async def test_repeated_and_concurrent_deliveries_with_one_idempotency_key_are_one_run(
    engine: Engine, gateway: WebhookGateway, http: aiohttp.ClientSession
) -> None:
    url = f"{gateway.url}/trigger/pipeline"
    keyed = [
        post(http, url, {"n": i % 3}, headers={"X-API-Key": KEY, "Idempotency-Key": f"d-{i % 3}"})
        for i in range(12)
    ]
    replies = await asyncio.gather(*keyed)
    assert {status for status, _, _ in replies} == {202}
    assert len({reply["run_id"] for _, _, reply in replies}) == 3
    # A configured delivery-id header works the same way.
    a = await post(
        http, f"{gateway.url}/orders", {"order_id": 1, "amount": 2}, headers={"X-Delivery": "gh-1"}
    )
    b = await post(
        http, f"{gateway.url}/orders", {"order_id": 1, "amount": 2}, headers={"X-Delivery": "gh-1"}
    )
    assert a[0] == b[0] == 202 and a[2]["run_id"] == b[2]["run_id"]
    runs = await finished_runs(engine, 4)
    assert len(runs) == 4


async def test_an_idempotency_key_reused_with_another_body_is_refused_with_422(
    engine: Engine, gateway: WebhookGateway, http: aiohttp.ClientSession
) -> None:
    url = f"{gateway.url}/trigger/pipeline"
    headers = {"X-API-Key": KEY, "Idempotency-Key": "order-17"}
    first = await post(http, url, {"qty": 1}, headers=headers)
    assert first[0] == 202
    status, _, reply = await post(http, url, {"qty": 2}, headers=headers)
    assert status == 422
    assert reply == {
        "error": "Idempotency-Key 'order-17' was already used with another body; send the "
        "same body again to get its run, or use a new key"
    }
    again = await post(http, url, {"qty": 1}, headers=headers)
    assert again[0] == 202 and again[2]["run_id"] == first[2]["run_id"]
    # The bytes count, not their meaning: the same JSON spaced differently is another body.
    assert (await post(http, url, data=b'{"qty":  1}', headers=headers))[0] == 422
    # Concurrent requests with one new key and different bodies: one run, the others refused.
    racing = await asyncio.gather(
        *(
            post(http, url, {"n": i}, headers={"X-API-Key": KEY, "Idempotency-Key": "race"})
            for i in range(6)
        )
    )
    assert sorted(status for status, _, _ in racing) == [202] + [422] * 5
    (won,) = [reply for status, _, reply in racing if status == 202]
    run = await engine.wait(won["run_id"], timeout=20)
    assert run.output["event"]["body"] in [{"n": i} for i in range(6)]
    assert run.output["event"]["body_digest"].startswith("sha256:")
    too_long = {"X-API-Key": KEY, "Idempotency-Key": "k" * 256}
    status, _, reply = await post(http, url, {}, headers=too_long)
    assert status == 400 and "longer than 255" in reply["error"]


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("kafka", marks=pytest.mark.kafka)])
async def test_the_body_an_idempotency_key_was_used_with_is_remembered_across_a_restart(
    tmp_path: Any, backend: str, request: pytest.FixtureRequest
) -> None:
    if backend == "kafka":
        store = request.getfixturevalue("kafka_url")
    else:
        store = f"sqlite:///{tmp_path / 'hooks.db'}"
    headers = {"Idempotency-Key": "delivery-9"}
    run_ids = []
    for body, expected in (({"a": 1}, 202), ({"a": 2}, 422), ({"a": 1}, 202)):
        async with Engine(store, [recording_workflow()]) as engine:
            gw = WebhookGateway(engine, port=0, api_keys=ApiKeys([]))
            gw.add_webhook("on_event", WebhookEvent(path="/hook"))
            await engine.add_service(gw)
            async with aiohttp.ClientSession() as http:
                status, _, reply = await post(http, f"{gw.url}/hook", body, headers=headers)
            assert status == expected, reply
            if status == 202:
                run_ids.append(reply["run_id"])
    assert len(set(run_ids)) == 1


async def test_bad_bodies_get_their_error_and_good_ones_still_start_runs(
    engine: Engine, gateway: WebhookGateway, http: aiohttp.ClientSession
) -> None:
    auth = {"X-API-Key": KEY}
    url = f"{gateway.url}/trigger/pipeline"
    assert (await post(http, url, data=b"{not json", headers=auth))[0] == 400
    assert (await post(http, url, data=b"x" * 4096, headers=auth))[0] == 413

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b" " * 1000  # no Content-Length: the limit holds while streaming

    async with http.post(url, data=chunks(), headers=auth) as reply:
        assert reply.status == 413
    status, _, reply = await post(http, f"{gateway.url}/orders", {"order_id": "x"})
    assert status == 422 and reply["detail"][0]["loc"] == ["order_id"]
    async with http.get(url, headers=auth) as got:
        assert got.status == 405
    assert (await post(http, f"{gateway.url}/orders", {"order_id": 7, "amount": 1.5}))[0] == 202
    (run,) = await finished_runs(engine, 1)
    assert run.output["event"]["body"] == {"order_id": 7, "amount": 1.5}


async def test_hmac_signatures_are_checked_before_parsing_with_two_live_secrets(
    engine: Engine, gateway: WebhookGateway, http: aiohttp.ClientSession
) -> None:
    url = f"{gateway.url}/signed"
    body = orjson.dumps({"event": "push"})
    for age, secret in enumerate(SECRETS):
        # Distinct timestamps: one signed (timestamp, body) pair is one delivery (a replay).
        signature = sign(body, secret, timestamp=int(time.time()) - age)
        status, _, _ = await post(http, url, data=body, headers={"Deerflow-Signature": signature})
        assert status == 202
    stale = sign(body, SECRETS[0], timestamp=int(time.time()) - 301)
    wrong = sign(body, "not-the-secret")
    tampered = sign(b'{"event": "other"}', SECRETS[0])
    for header in (
        {},
        {"Deerflow-Signature": stale},
        {"Deerflow-Signature": wrong},
        {"Deerflow-Signature": tampered},
        {"Deerflow-Signature": "t=1"},
    ):
        assert (await post(http, url, data=body, headers=header))[0] == 401, header
    # Not JSON but unsigned: the signature is refused first, the body is never parsed.
    assert (await post(http, url, data=b"{not json"))[0] == 401
    runs = await finished_runs(engine, 2)
    assert all(
        "deerflow-signature" not in {k.lower() for k in r.output["event"]["headers"]} for r in runs
    )


async def test_a_saturated_gateway_answers_503_or_429_with_retry_after(
    engine: Engine, http: aiohttp.ClientSession
) -> None:
    gw = WebhookGateway(engine, port=0, max_running=1, max_pending=1)
    gw.add_webhook("on_event", WebhookEvent(path="/hook"))
    await engine.add_service(gw)
    assert gw.load is not None
    gw.load.running.add("busy-run")  # one run in progress: the limit
    status, headers, _ = await post(http, f"{gw.url}/hook", {})
    assert status == 503 and headers["Retry-After"]
    gw.load.running.clear()
    gw.pending = 1  # one request being answered: the limit
    status, headers, _ = await post(http, f"{gw.url}/hook", {})
    assert status == 429 and headers["Retry-After"]
    gw.pending = 0
    assert (await post(http, f"{gw.url}/hook", {}))[0] == 202


async def test_more_routes_share_the_gateways_server_and_unknown_runs_are_404(
    engine: Engine, gateway: WebhookGateway, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{gateway.url}/dashboard") as got:
        assert await got.json() == {"hello": "dashboard"}
    async with http.get(f"{gateway.url}/runs/nope", headers={"X-API-Key": KEY}) as got:
        assert got.status == 404


async def test_api_key_webhooks_refuse_to_start_without_keys(engine: Engine) -> None:
    gw = WebhookGateway(engine, port=0, api_keys=ApiKeys([]))
    gw.add_webhook("on_event", WebhookEvent(path="/x", auth="api_key"))
    with pytest.raises(Exception, match="no API keys"):
        await gw.start()
    assert "k-" not in repr(ApiKeys([KEY]))


def test_keys_come_from_the_environment_or_the_config_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    from deerflow.connectors import load_config

    config = tmp_path / "deerflow.toml"
    config.write_text('[gateway]\napi_keys = ["from-file"]\n')
    keys = ApiKeys.configured(load_config(config))
    assert keys.accepts("from-file") and not keys.accepts("from-env")
    monkeypatch.setenv("DEERFLOW_API_KEYS", "from-env, other")
    keys = ApiKeys.configured(load_config(config))
    assert keys.accepts("from-env") and keys.accepts("other") and not keys.accepts("from-file")
