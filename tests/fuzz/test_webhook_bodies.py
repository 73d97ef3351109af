"""Fuzzing the webhook gateway over real HTTP: any request gets a documented answer, never 500.

A gateway runs (in a thread of its own, on an in-memory store) with three routes: open, signed
(HMAC) and schema-checked (with a validator that raises). Hypothesis sends arbitrary bodies
(bytes, JSON of any shape, JSON nested deeper than anything stores), arbitrary signature and
idempotency headers. Criteria: every answer is 202 (with a run id), 400, 401, 413 or 422 —
never a server error — and the gateway keeps answering.
"""

from __future__ import annotations

import asyncio
import http.client
import threading
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, field_validator

from deerflow import Engine, Workflow
from deerflow.connectors import WebhookGateway, sign
from deerflow.events import WebhookEvent

SECRET = "whsec-fuzz"
DOCUMENTED = {202, 400, 401, 413, 422}


class Order(BaseModel):
    """The schema route's payload; its validator raises ValueError for negative amounts."""

    order_id: int
    amount: float

    @field_validator("amount")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value < 0:
            raise ValueError("amount must be positive")
        return value


@pytest.fixture(scope="module")
def gateway_port() -> Iterator[int]:
    """A gateway served from its own thread and event loop for the whole module."""
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def serve() -> None:
        wf = Workflow(name="fuzzed")
        wf.task(id="handle")(lambda context: None)
        async with Engine("memory://webhook-fuzz", [wf]) as engine:
            gw = WebhookGateway(engine, port=0, body_timeout=2.0)
            gw.add_webhook("fuzzed", WebhookEvent(path="/open", max_body=8192))
            gw.add_webhook(
                "fuzzed",
                WebhookEvent(
                    path="/signed", signing_secrets=(SECRET,), name="signed", max_body=8192
                ),
            )
            gw.add_webhook(
                "fuzzed",
                WebhookEvent(path="/schema", payload_schema=Order, name="schema", max_body=8192),
            )
            await engine.add_service(gw)
            box["port"], box["loop"], box["stop"] = (
                gw.port,
                asyncio.get_running_loop(),
                asyncio.Event(),
            )
            ready.set()
            await box["stop"].wait()

    thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    thread.start()
    assert ready.wait(30), "the gateway did not start"
    yield box["port"]
    box["loop"].call_soon_threadsafe(box["stop"].set)
    thread.join(30)


scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=25,
)


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["bytes", "json", "order", "deep", "deep-object"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "json":
        return orjson.dumps(draw(json_values))
    if kind == "order":
        return orjson.dumps(
            {
                "order_id": draw(st.integers(-5, 5) | st.text(max_size=3)),
                "amount": draw(st.floats(-10, 10) | st.none()),
            }
        )
    depth = draw(st.integers(50, 1500))
    if kind == "deep":
        return b"[" * depth + b"]" * depth
    return b'{"order_id": 1, "amount": 2, "x": ' + b"[" * depth + b"]" * depth + b"}"


header_text = st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=60)


@st.composite
def signatures(draw: st.DrawFn, body: bytes) -> str | None:
    kind = draw(st.sampled_from(["none", "valid", "garbage", "near"]))
    if kind == "none":
        return None
    if kind == "valid":
        return sign(body, SECRET)
    if kind == "near":
        t = draw(st.sampled_from(["\u00b2", "1" * 30, "-5", "", "12.5", "0x10"]))
        return f"t={t},v1={sign(body, SECRET).split('v1=')[1]}"
    return draw(header_text)


def post(port: int, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", path, body=body, headers=headers)
        reply = conn.getresponse()
        return reply.status, reply.read()
    finally:
        conn.close()


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.data())
def test_any_request_gets_a_documented_answer(gateway_port: int, data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(["/open", "/signed", "/schema"]))
    body = data.draw(bodies())
    headers = {"Content-Type": "application/json"}
    signature = data.draw(signatures(body))
    if signature is not None:
        headers["Deerflow-Signature"] = signature
    if data.draw(st.booleans()):
        headers["Idempotency-Key"] = data.draw(header_text)
    status, answer = post(gateway_port, path, body, headers)
    assert status in DOCUMENTED, (status, answer[:300])
    if status == 202:
        assert orjson.loads(answer)["run_id"]
