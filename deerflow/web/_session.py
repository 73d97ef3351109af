"""The dashboard's sign-in sessions: a signed, expiring token in the cookie, never the key itself.

A token reads ``v1.<key id>.<expiry>.<signature>``: the key id is a short hash of the API key
that signed in (so the token says which key without holding it), the expiry is in epoch seconds,
and the signature is an HMAC-SHA256 over both, keyed by that API key. Nothing is kept on the
server, so every process serving the same keys accepts the same sessions, and a token stops
working when it expires or when its key is removed from the configuration (rotating a key ends
its sessions). Signing out clears the cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Iterable

COOKIE = "deerflow_session"
SESSION_TTL_ENV = "DEERFLOW_SESSION_TTL"
#: How long a sign-in lasts by default: a working day.
DEFAULT_TTL = 8 * 3600.0
_VERSION = "v1"


def session_ttl(configured: object = None) -> float:
    """Seconds a session lasts: ``DEERFLOW_SESSION_TTL``, else ``[gateway] session_ttl``, else 8 h.

    Raises:
        ValueError: the setting is not a positive number.
    """
    text = os.environ.get(SESSION_TTL_ENV) or configured
    if text is None or text == "":
        return DEFAULT_TTL
    try:
        ttl = float(str(text))
    except ValueError:
        raise ValueError(f"session_ttl must be seconds, not {text!r}") from None
    if not ttl > 0:
        raise ValueError(f"session_ttl must be positive, not {text!r}")
    return ttl


def key_id(key: str) -> str:
    """A short public name of ``key`` (it cannot be turned back into the key)."""
    return hashlib.sha256(b"deerflow-key-id\x00" + key.encode()).hexdigest()[:16]


def _signature(key: str, kid: str, expiry: int) -> str:
    message = f"deerflow-session\x00{kid}\x00{expiry}".encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def issue(key: str, ttl: float, now: float | None = None) -> str:
    """A token for a browser that signed in with ``key``, valid ``ttl`` seconds."""
    expiry = int((time.time() if now is None else now) + ttl)
    kid = key_id(key)
    return f"{_VERSION}.{kid}.{expiry}.{_signature(key, kid, expiry)}"


def verify(token: str | None, keys: Iterable[str], now: float | None = None) -> bool:
    """Whether ``token`` was issued for one of ``keys``, unaltered and not yet expired."""
    if not token:
        return False
    parts = token.split(".")
    if len(parts) != 4 or parts[0] != _VERSION or not parts[2].isascii():
        return False
    _, kid, expiry_text, given = parts
    if not expiry_text.isdigit() or len(expiry_text) > 12:
        return False
    expiry = int(expiry_text)
    if expiry <= (time.time() if now is None else now):
        return False
    for key in keys:
        if hmac.compare_digest(key_id(key), kid):
            return hmac.compare_digest(_signature(key, kid, expiry), given)
    return False
