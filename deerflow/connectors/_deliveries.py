"""What names a webhook delivery (its ``Idempotency-Key``, the provider's delivery id, the
trigger's ``dedupe_key``), and the digest of the body a key is bound to."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from deerflow.connectors.base import RunRequest
from deerflow.events import WebhookRequestEvent

__all__ = ["MAX_DELIVERY_ID", "body_digest", "dedupe_value", "other_body", "text_of"]

#: The longest ``Idempotency-Key`` (or delivery id) taken, as Stripe's.
MAX_DELIVERY_ID = 255


def body_digest(raw: bytes) -> str:
    """What an idempotency key remembers of a body: ``sha256:<hex>``."""
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def other_body(recorded: Mapping[str, Any] | None, digest: str, text: str | None = None) -> bool:
    """Whether what a key recorded (a run's trigger event, a wait's bound digest) came with a
    body other than ``digest``'s; ``text`` is the body's, for runs recorded before digests."""
    if not recorded:
        return False
    kept = recorded.get("body_digest")
    if kept is None:  # a run recorded before digests were kept: compare its text
        return text is not None and recorded.get("text") != text
    return bool(kept != digest)


def text_of(run: RunRequest) -> str | None:
    return run.event.text if isinstance(run.event, WebhookRequestEvent) else None


def dedupe_value(path: str, headers: Mapping[str, str], body: Any) -> str | None:
    """The value a ``dedupe_key`` path (``body.a.b`` or ``headers.Name``) names, or ``None``."""
    root, _, rest = path.partition(".")
    if root == "headers":
        return headers.get(rest) or None
    value = body
    for part in rest.split("."):
        if isinstance(value, Mapping):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    if isinstance(value, bool) or not isinstance(value, str | int | float) or value == "":
        return None
    return str(value)
