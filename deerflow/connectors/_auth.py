"""Webhook credentials: API keys and Stripe-style HMAC-SHA256 signatures.

API keys come from ``DEERFLOW_API_KEYS`` (comma-separated) or the ``[gateway] api_keys`` list
of the configuration file (``--config``, ``DEERFLOW_CONFIG`` or ``./deerflow.toml``). They are
never logged and are compared in constant time against every configured key.

A signature header reads ``t=<unix seconds>,v1=<hex>[,v1=<hex>...]`` where each ``v1`` is
``HMAC-SHA256(secret, f"{t}." + raw_body)``. A request is accepted when some ``v1`` matches some
configured secret (two live secrets during a rotation) and ``t`` is within the tolerance.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from deerflow.errors import ConnectorError

API_KEYS_ENV = "DEERFLOW_API_KEYS"
SECRETS_ENV = "DEERFLOW_WEBHOOK_SECRETS"
CONFIG_ENV = "DEERFLOW_CONFIG"
DEFAULT_CONFIG = "deerflow.toml"


def load_config(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The ``[gateway]`` table of the configuration file, or ``{}`` when there is none.

    ``path`` (else ``DEERFLOW_CONFIG``) must exist; ``./deerflow.toml`` is read if present.
    """
    chosen = path or os.environ.get(CONFIG_ENV)
    file = Path(chosen) if chosen else Path(DEFAULT_CONFIG)
    if not file.is_file():
        if chosen:
            raise ConnectorError(f"no configuration file {file}", retriable=False)
        return {}
    try:
        data = tomllib.loads(file.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConnectorError(
            f"cannot read configuration file {file}: {exc}", retriable=False
        ) from exc
    gateway = data.get("gateway", {})
    return dict(gateway) if isinstance(gateway, Mapping) else {}


def _split(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def _listed(config: Mapping[str, Any], name: str) -> list[str]:
    value = config.get(name, [])
    return [str(v) for v in value] if isinstance(value, list) else _split(str(value))


class ApiKeys:
    """A set of API keys, checked in constant time; its repr never shows them."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._keys = [k.encode() for k in keys if k]

    @classmethod
    def configured(cls, config: Mapping[str, Any]) -> ApiKeys:
        """Keys from ``DEERFLOW_API_KEYS``, else from the config's ``api_keys``."""
        return cls(_split(os.environ.get(API_KEYS_ENV)) or _listed(config, "api_keys"))

    def __bool__(self) -> bool:
        return bool(self._keys)

    def __repr__(self) -> str:
        return f"ApiKeys(<{len(self._keys)} keys>)"

    def values(self) -> list[str]:
        """The keys themselves (to sign and check dashboard sessions; never to show)."""
        return [k.decode() for k in self._keys]

    def accepts(self, presented: str | None) -> bool:
        """Whether ``presented`` is one of the keys (every key is compared, always)."""
        if presented is None or not self._keys:
            return False
        candidate = presented.encode()
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(candidate, key)
        return matched


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key a request carries in ``X-API-Key`` or ``Authorization: Bearer``."""
    key = headers.get("X-API-Key")
    if key:
        return key.strip()
    scheme, _, token = headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def configured_secrets(own: Iterable[str], config: Mapping[str, Any]) -> list[str]:
    """A trigger's own signing secrets, else ``DEERFLOW_WEBHOOK_SECRETS``, else the config's."""
    secrets = [s for s in own if s]
    return secrets or _split(os.environ.get(SECRETS_ENV)) or _listed(config, "webhook_secrets")


def sign(body: bytes, secret: str, timestamp: int | None = None) -> str:
    """The signature header value for ``body`` (what a sender computes)."""
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def parse_signature(header: str) -> tuple[int | None, list[bytes]]:
    """``(t, [v1, ...])`` of a signature header; ``t`` is ``None`` unless plain ASCII digits."""
    stamp: int | None = None
    given: list[bytes] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        # isdigit() alone accepts "²" and int() would raise; 15 digits bound the int parse.
        if name == "t" and value.isascii() and value.isdigit() and len(value) <= 15:
            stamp = int(value)
        elif name == "v1" and value:
            given.append(value.encode())
    return stamp, given


def signature_problem(
    header: str | None,
    body: bytes,
    secrets: Iterable[str],
    *,
    tolerance: float,
    now: float | None = None,
) -> str | None:
    """Why a signature header does not verify ``body``, or ``None`` when it does."""
    if not header:
        return "missing signature"
    stamp, given = parse_signature(header)
    if stamp is None or not given:
        return "malformed signature header"
    if abs((time.time() if now is None else now) - stamp) > tolerance:
        return "signature timestamp outside the tolerance"
    signed = f"{stamp}.".encode() + body
    matched = False
    for secret in secrets:
        expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest().encode()
        for candidate in given:
            matched |= hmac.compare_digest(candidate, expected)
    return None if matched else "signature does not match"


def signed_identity(header: str, body: bytes) -> str:
    """What a verified signature vouches for: its timestamp and the body's hash.

    A replay of a signed request within the tolerance carries the same pair, however its
    header is rearranged, so it maps to the same run instead of starting another.
    """
    stamp, _ = parse_signature(header)
    return f"signed:{stamp}:{hashlib.sha256(body).hexdigest()}"
