"""Webhook signature schemes: deerflow's own and those of the senders users already have.

A :class:`Scheme` checks a request's signature over the raw body (before anything parses it),
says which headers carry credentials (never shown to tasks), and names the delivery: the id
the sender keeps when it retries, which becomes the run's identity. Every scheme accepts
several secrets at once (a rotation) and compares in constant time against all of them.

=============  ===========================================  =================  ==============
scheme         signature                                    replay window      delivery id
=============  ===========================================  =================  ==============
``deerflow``   ``Deerflow-Signature: t=,v1=<hex>``          ``t`` (tolerance)  signed t + body
``stripe``     ``Stripe-Signature: t=,v1=<hex>``            ``t`` (tolerance)  body ``id``
``github``     ``X-Hub-Signature-256: sha256=<hex>``        none (body only)   X-GitHub-Delivery
``standard``   ``webhook-signature: v1,<base64>``           webhook-timestamp  webhook-id
``slack``      ``X-Slack-Signature: v0=<hex>``              X-Slack-Request-…  body event_id
``shopify``    ``X-Shopify-Hmac-Sha256: <base64>``          none (body only)   X-Shopify-…-Id
=============  ===========================================  =================  ==============
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from deerflow.connectors._auth import parse_signature, signed_identity
from deerflow.errors import ConnectorError

__all__ = ["PROVIDERS", "Scheme", "scheme_for"]


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def _matches(given: Iterable[bytes], expected: Iterable[bytes]) -> bool:
    """Whether some given signature equals some expected one (every pair compared)."""
    wanted = list(expected)
    matched = False
    for candidate in given:
        for signature in wanted:
            matched |= hmac.compare_digest(candidate, signature)
    return matched


def _stamp(text: str | None) -> int | None:
    """A unix-seconds header as an int, or ``None`` unless plain ASCII digits."""
    if text and text.isascii() and text.isdigit() and len(text) <= 15:
        return int(text)
    return None


def _text_field(body: Any, name: str) -> str | None:
    value = body.get(name) if isinstance(body, Mapping) else None
    return value if isinstance(value, str) and value else None


class Scheme:
    """deerflow's own scheme: ``Deerflow-Signature: t=<unix>,v1=<hex>`` over ``"<t>." + body``;
    also the template the providers' schemes fill in: one HMAC-SHA256 per secret over what
    :meth:`content` builds, written as :meth:`encode` writes it, compared with what
    :meth:`given` reads from the signature header, within the tolerance of :meth:`stamp`.

    Args:
        header: the header carrying the signature.
    """

    name = "deerflow"
    timestamped = True

    def __init__(self, header: str = "Deerflow-Signature") -> None:
        self.header = header

    @property
    def hidden(self) -> frozenset[str]:
        """Lower-cased headers that carry credentials (kept from the trigger event)."""
        return frozenset({self.header.lower()})

    def key(self, secret: str) -> bytes:
        """The HMAC key of a configured secret; :class:`ConnectorError` if it is malformed."""
        return secret.encode()

    def signature(self, headers: Mapping[str, str]) -> str | None:
        """The signature header's value."""
        return headers.get(self.header)

    def stamp(self, headers: Mapping[str, str], header: str) -> int | None:
        """The signed timestamp (unix seconds), ``None`` when missing or malformed."""
        return parse_signature(header)[0]

    def given(self, header: str) -> list[bytes]:
        """The signatures the header offers."""
        return parse_signature(header)[1]

    def content(self, headers: Mapping[str, str], stamp: int | None, raw: bytes) -> bytes:
        """What the sender signed."""
        return f"{stamp}.".encode() + raw

    def encode(self, digest: bytes) -> bytes:
        """A digest written as the sender writes it."""
        return digest.hex().encode()

    def problem(
        self,
        headers: Mapping[str, str],
        raw: bytes,
        secrets: Sequence[str],
        tolerance: float,
        now: float | None = None,
    ) -> str | None:
        """Why the request's signature does not verify ``raw``, or ``None`` when it does."""
        header = self.signature(headers)
        if not header:
            return f"missing {self.header}"
        given = self.given(header)
        if not given:
            return f"malformed {self.header}"
        stamp = None
        if self.timestamped:
            stamp = self.stamp(headers, header)
            if stamp is None:
                return f"missing or malformed timestamp of {self.header}"
            if abs((time.time() if now is None else now) - stamp) > tolerance:
                return "signature timestamp outside the tolerance"
        signed = self.content(headers, stamp, raw)
        expected = (self.encode(_hmac(self.key(s), signed)) for s in secrets)
        return None if _matches(given, expected) else "signature does not match"

    def delivery(self, headers: Mapping[str, str], body: Any) -> str | None:
        """The sender's id for this delivery, the same on each of its retries (none here)."""
        return None

    def signed(self, headers: Mapping[str, str], raw: bytes) -> str | None:
        """Without a delivery id: what a verified signature vouches for, so a replay of the
        same signed request is the same run."""
        signature = self.signature(headers)
        return signed_identity(signature, raw) if signature else None

    def reply(self, body: Any) -> Any:
        """An answer the sender expects instead of a run (a handshake), or ``None``."""
        return None


class Stripe(Scheme):
    """Stripe: deerflow's scheme under ``Stripe-Signature``; a retry is a new ``t=`` for the
    same event, so the delivery is the event's ``id`` from the body."""

    name = "stripe"

    def __init__(self) -> None:
        super().__init__("Stripe-Signature")

    def delivery(self, headers: Mapping[str, str], body: Any) -> str | None:
        """See :meth:`Scheme.delivery`: the event id (``evt_...``)."""
        return _text_field(body, "id")


class _Keyed(Scheme):
    """A provider's scheme: the whole header is the signature; a timestamp, if any, comes
    in ``stamp_header``."""

    timestamped = False
    stamp_header = ""

    def stamp(self, headers: Mapping[str, str], header: str) -> int | None:
        """See :meth:`Scheme.stamp`."""
        return _stamp(headers.get(self.stamp_header))

    def given(self, header: str) -> list[bytes]:
        """See :meth:`Scheme.given`."""
        return [header.strip().encode()]

    def content(self, headers: Mapping[str, str], stamp: int | None, raw: bytes) -> bytes:
        """See :meth:`Scheme.content`: the body alone."""
        return raw


class GitHub(_Keyed):
    """GitHub: ``X-Hub-Signature-256: sha256=<hex HMAC of the body>``; no timestamp is
    signed, so a replay is caught by its ``X-GitHub-Delivery`` (the same run), not by age."""

    name = "github"

    def __init__(self) -> None:
        super().__init__("X-Hub-Signature-256")

    def encode(self, digest: bytes) -> bytes:
        """See :meth:`Scheme.encode`."""
        return b"sha256=" + digest.hex().encode()

    def delivery(self, headers: Mapping[str, str], body: Any) -> str | None:
        """See :meth:`Scheme.delivery`: ``X-GitHub-Delivery``."""
        return headers.get("X-GitHub-Delivery") or None


class Shopify(_Keyed):
    """Shopify: ``X-Shopify-Hmac-Sha256: <base64 HMAC of the body>`` and
    ``X-Shopify-Webhook-Id``, the same on each retry."""

    name = "shopify"

    def __init__(self) -> None:
        super().__init__("X-Shopify-Hmac-Sha256")

    def encode(self, digest: bytes) -> bytes:
        """See :meth:`Scheme.encode`."""
        return base64.b64encode(digest)

    def delivery(self, headers: Mapping[str, str], body: Any) -> str | None:
        """See :meth:`Scheme.delivery`: ``X-Shopify-Webhook-Id``."""
        return headers.get("X-Shopify-Webhook-Id") or None


class Standard(_Keyed):
    """Standard Webhooks (Svix and the APIs built on it): ``webhook-signature: v1,<base64>``
    (several, space-separated) over ``"<webhook-id>.<webhook-timestamp>." + body``, keyed by
    the base64 part of a ``whsec_`` secret. The ``svix-`` headers are read as well."""

    name = "standard"
    timestamped = True

    def __init__(self) -> None:
        super().__init__("webhook-signature")

    @property
    def hidden(self) -> frozenset[str]:
        """See :attr:`Scheme.hidden`."""
        return frozenset({"webhook-signature", "svix-signature"})

    def key(self, secret: str) -> bytes:
        """See :meth:`Scheme.key`: the bytes a ``whsec_<base64>`` secret encodes."""
        try:
            return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except (binascii.Error, ValueError):
            raise ConnectorError(
                "a Standard Webhooks secret is 'whsec_' followed by base64", retriable=False
            ) from None

    @staticmethod
    def _header(headers: Mapping[str, str], name: str) -> str | None:
        return headers.get(f"webhook-{name}") or headers.get(f"svix-{name}")

    def stamp(self, headers: Mapping[str, str], header: str) -> int | None:
        """See :meth:`Scheme.stamp`."""
        return _stamp(self._header(headers, "timestamp"))

    def signature(self, headers: Mapping[str, str]) -> str | None:
        """See :meth:`Scheme.signature`."""
        return self._header(headers, "signature")

    def given(self, header: str) -> list[bytes]:
        """See :meth:`Scheme.given`: the ``v1`` signatures."""
        parts = (part.partition(",") for part in header.split())
        return [value.encode() for version, _, value in parts if version == "v1" and value]

    def content(self, headers: Mapping[str, str], stamp: int | None, raw: bytes) -> bytes:
        """See :meth:`Scheme.content`."""
        return f"{self._header(headers, 'id')}.{stamp}.".encode() + raw

    def encode(self, digest: bytes) -> bytes:
        """See :meth:`Scheme.encode`."""
        return base64.b64encode(digest)

    def delivery(self, headers: Mapping[str, str], body: Any) -> str | None:
        """See :meth:`Scheme.delivery`: ``webhook-id``."""
        return self._header(headers, "id")


class Slack(_Keyed):
    """Slack: ``X-Slack-Signature: v0=<hex>`` over ``"v0:<X-Slack-Request-Timestamp>:" +
    body``. An Events API callback is named by its ``event_id`` (a retry keeps it), a slash
    command or an interaction by its ``trigger_id``; the ``url_verification`` handshake is
    answered with its challenge and starts nothing."""

    name = "slack"
    timestamped = True
    stamp_header = "X-Slack-Request-Timestamp"

    def __init__(self) -> None:
        super().__init__("X-Slack-Signature")

    def content(self, headers: Mapping[str, str], stamp: int | None, raw: bytes) -> bytes:
        """See :meth:`Scheme.content`."""
        return f"v0:{stamp}:".encode() + raw

    def encode(self, digest: bytes) -> bytes:
        """See :meth:`Scheme.encode`."""
        return b"v0=" + digest.hex().encode()

    def delivery(self, headers: Mapping[str, str], body: Any) -> str | None:
        """See :meth:`Scheme.delivery`: ``event_id``, else ``trigger_id``."""
        interaction = body.get("payload") if isinstance(body, Mapping) else None
        return (
            _text_field(body, "event_id")
            or _text_field(body, "trigger_id")
            or _text_field(interaction, "trigger_id")
        )

    def reply(self, body: Any) -> Any:
        """See :meth:`Scheme.reply`: ``{"challenge": ...}`` for ``url_verification``."""
        if isinstance(body, Mapping) and body.get("type") == "url_verification":
            return {"challenge": body.get("challenge")}
        return None


PROVIDERS: dict[str, type[Scheme]] = {
    cls.name: cls for cls in (GitHub, Stripe, Standard, Slack, Shopify)
}


def scheme_for(provider: str | None, header: str) -> Scheme:
    """The scheme of ``provider``, else deerflow's own under ``header``."""
    return PROVIDERS[provider]() if provider else Scheme(header)
