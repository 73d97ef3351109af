"""A workflow behind two webhooks, for ``deerflow serve``: API-key and HMAC-signed.

Keys and secrets come from ``DEERFLOW_API_KEYS`` and ``DEERFLOW_WEBHOOK_SECRETS``.
"""

from __future__ import annotations

from deerflow import Workflow
from deerflow.events import WebhookEvent

workflow = Workflow(name="hooked")
workflow.add_trigger(WebhookEvent(path="/hook", auth="api_key", max_body=64 * 1024))
workflow.add_trigger(WebhookEvent(path="/signed", auth="hmac", name="signed"))


@workflow.task(id="handle")
def handle(context):
    return {"got": context.trigger_event.body}
