"""Webhooks signed the way GitHub, Stripe, Standard Webhooks (Svix), Slack and Shopify sign
them, sent over real HTTP; signed with the providers' own libraries where they have one."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
import pytest
from slack_sdk.signature import SignatureVerifier
from standardwebhooks.webhooks import Webhook as StandardWebhook
from stripe import WebhookSignature

from deerflow import Engine
from deerflow.connectors import WebhookGateway
from deerflow.connectors._providers import PROVIDERS
from deerflow.errors import ConnectorError, DefinitionError
from deerflow.events import WEBHOOK_PROVIDERS, WebhookEvent
from tests.connectors.conftest import finished_runs, post

SECRETS: dict[str, tuple[str, str]] = {
    "github": ("gh-old", "gh-new"),
    "stripe": ("whsec_stripe_old", "whsec_stripe_new"),
    "standard": (
        "whsec_" + base64.b64encode(b"standard-old-key-32-bytes-long!!").decode(),
        "whsec_" + base64.b64encode(b"standard-new-key-32-bytes-long!!").decode(),
    ),
    "slack": ("slack-old", "slack-new"),
    "shopify": ("shopify-old", "shopify-new"),
}
Signer = Callable[[bytes, str, int, str], dict[str, str]]


def _hmac(secret: str, message: bytes) -> bytes:
    return hmac.new(secret.encode(), message, hashlib.sha256).digest()


def github(body: bytes, secret: str, when: int, delivery: str) -> dict[str, str]:
    # GitHub has no signing library: its documented scheme.
    signature = "sha256=" + _hmac(secret, body).hex()
    return {"X-Hub-Signature-256": signature, "X-GitHub-Delivery": delivery}


def stripe(body: bytes, secret: str, when: int, delivery: str) -> dict[str, str]:
    header = WebhookSignature.generate_signature_header(body.decode(), secret, timestamp=when)
    return {"Stripe-Signature": header}


def standard(body: bytes, secret: str, when: int, delivery: str) -> dict[str, str]:
    at = datetime.fromtimestamp(when, tz=UTC)
    signature = StandardWebhook(secret).sign(delivery, at, body)
    return {"webhook-id": delivery, "webhook-timestamp": str(when), "webhook-signature": signature}


def slack(body: bytes, secret: str, when: int, delivery: str) -> dict[str, str]:
    signature = SignatureVerifier(secret).generate_signature(timestamp=str(when), body=body)
    assert signature is not None
    return {"X-Slack-Signature": signature, "X-Slack-Request-Timestamp": str(when)}


def shopify(body: bytes, secret: str, when: int, delivery: str) -> dict[str, str]:
    # Shopify's libraries verify but do not sign: its documented scheme.
    signature = base64.b64encode(_hmac(secret, body)).decode()
    return {"X-Shopify-Hmac-Sha256": signature, "X-Shopify-Webhook-Id": delivery}


SIGNERS: dict[str, Signer] = {
    "github": github,
    "stripe": stripe,
    "standard": standard,
    "slack": slack,
    "shopify": shopify,
}
SIGNATURE_HEADERS = {
    "github": "x-hub-signature-256",
    "stripe": "stripe-signature",
    "standard": "webhook-signature",
    "slack": "x-slack-signature",
    "shopify": "x-shopify-hmac-sha256",
}
TIMESTAMPED = {"stripe", "standard", "slack"}


def event_body(provider: str, delivery: str, **more: Any) -> bytes:
    """A body as the provider sends it, naming the delivery where the body does."""
    if provider == "stripe":
        return orjson.dumps({"id": delivery, "type": "invoice.paid", **more})
    if provider == "slack":
        return orjson.dumps({"type": "event_callback", "event_id": delivery, **more})
    return orjson.dumps({"action": "opened", **more})


@pytest.fixture
async def gateway(engine: Engine) -> AsyncIterator[WebhookGateway]:
    gw = WebhookGateway(engine, port=0)
    for provider in WEBHOOK_PROVIDERS:
        gw.add_webhook(
            "on_event",
            WebhookEvent(path=f"/{provider}", provider=provider, signing_secrets=SECRETS[provider]),
        )
    gw.add_webhook("on_event", WebhookEvent(path="/generic", dedupe_key="body.event.id"))
    await engine.add_service(gw)
    yield gw


@pytest.mark.parametrize("provider", WEBHOOK_PROVIDERS)
async def test_a_providers_signed_delivery_starts_one_run_and_its_retry_is_the_same_run(
    provider: str, engine: Engine, gateway: WebhookGateway, http: aiohttp.ClientSession
) -> None:
    url, sign, (old, new) = f"{gateway.url}/{provider}", SIGNERS[provider], SECRETS[provider]
    now = int(time.time())
    body = event_body(provider, "d-1")
    status, _, first = await post(http, url, data=body, headers=sign(body, old, now, "d-1"))
    assert status == 202, first
    # The provider retries later: a new timestamp, a new signature, the same delivery.
    retry = sign(body, old, now - 30, "d-1")
    status, _, again = await post(http, url, data=body, headers=retry)
    assert status == 202 and again["run_id"] == first["run_id"]
    # Rotation: the new secret is accepted too; another delivery is another run.
    other = event_body(provider, "d-2")
    status, _, second = await post(http, url, data=other, headers=sign(other, new, now, "d-2"))
    assert status == 202 and second["run_id"] != first["run_id"]

    tampered = event_body(provider, "d-1", amount=10**6)
    refused = {
        "tampered": (tampered, sign(body, old, now, "d-1")),
        "wrong secret": (body, sign(body, "not-the-secret", now, "d-1")),
        "unsigned": (body, {}),
    }
    if provider in TIMESTAMPED:
        refused["stale"] = (body, sign(body, old, now - 301, "d-1"))
    for what, (data, headers) in refused.items():
        status, _, reply = await post(http, url, data=data, headers=headers)
        assert status == 401, (what, reply)

    runs = await finished_runs(engine, 2)
    assert len(runs) == 2
    run = await engine.wait(first["run_id"], timeout=20)
    event = run.output["event"]
    assert event["delivery_id"] == "d-1" and orjson.loads(event["text"]) == orjson.loads(body)
    assert SIGNATURE_HEADERS[provider] not in {k.lower() for k in event["headers"]}


async def test_slack_url_verification_is_answered_and_starts_nothing(
    engine: Engine, gateway: WebhookGateway, http: aiohttp.ClientSession
) -> None:
    body = orjson.dumps({"type": "url_verification", "challenge": "3eZbrw1a", "token": "x"})
    headers = slack(body, SECRETS["slack"][0], int(time.time()), "")
    status, _, reply = await post(http, f"{gateway.url}/slack", data=body, headers=headers)
    assert status == 200 and reply == {"challenge": "3eZbrw1a"}
    # Unsigned, the handshake is refused like any request.
    assert (await post(http, f"{gateway.url}/slack", data=body))[0] == 401
    assert await engine.list_runs() == []


async def test_a_slack_slash_command_arrives_form_encoded_and_is_decoded(
    engine: Engine, gateway: WebhookGateway, http: aiohttp.ClientSession
) -> None:
    body = b"command=%2Fdeploy&text=prod+now&user_id=U1&trigger_id=13345224609.738474920.8088"
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        **slack(body, SECRETS["slack"][1], int(time.time()), ""),
    }
    status, _, first = await post(http, f"{gateway.url}/slack", data=body, headers=headers)
    assert status == 202, first
    status, _, again = await post(http, f"{gateway.url}/slack", data=body, headers=headers)
    assert status == 202 and again["run_id"] == first["run_id"]
    run = await engine.wait(first["run_id"], timeout=20)
    event = run.output["event"]
    assert event["body"] == {
        "command": "/deploy",
        "text": "prod now",
        "user_id": "U1",
        "trigger_id": "13345224609.738474920.8088",
    }
    assert event["delivery_id"] == "13345224609.738474920.8088"


async def test_a_generic_webhooks_dedupe_key_collapses_a_senders_retries_into_one_run(
    engine: Engine, gateway: WebhookGateway, http: aiohttp.ClientSession
) -> None:
    url = f"{gateway.url}/generic"
    replies = [await post(http, url, {"event": {"id": "ev-7"}, "attempt": n}) for n in range(1, 4)]
    assert {status for status, _, _ in replies} == {202}
    assert len({reply["run_id"] for _, _, reply in replies}) == 1
    status, _, other = await post(http, url, {"event": {"id": 8}})
    assert status == 202 and other["run_id"] != replies[0][2]["run_id"]
    status, _, reply = await post(http, url, {"event": {}})
    assert status == 400 and reply == {"error": "the request has no body.event.id (dedupe_key)"}
    runs = await finished_runs(engine, 2)
    assert sorted(r.output["event"]["delivery_id"] for r in runs) == ["8", "ev-7"]


def test_an_unknown_provider_or_a_dedupe_key_that_is_no_path_fails_where_it_is_declared() -> None:
    with pytest.raises(DefinitionError, match="unknown webhook provider 'gitlab'") as caught:
        WebhookEvent(path="/hook", provider="gitlab")
    assert "github, stripe, standard, slack, shopify" in str(caught.value)
    with pytest.raises(
        DefinitionError, match=re.escape("must be 'body.<path>' or 'headers.<name>'")
    ):
        WebhookEvent(path="/hook", dedupe_key="event.id")
    assert set(PROVIDERS) == set(WEBHOOK_PROVIDERS)


def test_a_provider_needs_secrets_and_a_standard_secret_must_be_whsec_base64(
    engine: Engine,
) -> None:
    gw = WebhookGateway(engine, port=0)
    with pytest.raises(ConnectorError, match="provider='github' but no signing secrets"):
        gw.add_webhook("on_event", WebhookEvent(path="/gh", provider="github"))
    with pytest.raises(ConnectorError, match="'whsec_' followed by base64"):
        gw.add_webhook(
            "on_event",
            WebhookEvent(path="/std", provider="standard", signing_secrets=("whsec_not*b64",)),
        )


async def test_svix_headers_are_read_as_standard_webhooks_ones(
    engine: Engine, gateway: WebhookGateway, http: aiohttp.ClientSession
) -> None:
    body = event_body("standard", "msg_1")
    signed = standard(body, SECRETS["standard"][0], int(time.time()), "msg_1")
    svix = {name.replace("webhook-", "svix-"): value for name, value in signed.items()}
    status, _, first = await post(http, f"{gateway.url}/standard", data=body, headers=svix)
    assert status == 202, first
    status, _, again = await post(http, f"{gateway.url}/standard", data=body, headers=signed)
    assert status == 202 and again["run_id"] == first["run_id"]
    svix["svix-id"] = "msg_2"  # the id is signed: another id, the same signature, refused
    assert (await post(http, f"{gateway.url}/standard", data=body, headers=svix))[0] == 401
    (run,) = await finished_runs(engine, 1)
    assert "svix-signature" not in {k.lower() for k in run.output["event"]["headers"]}
