"""What deerflow's HTTP server takes from one client: the limits that keep it up under abuse.

``deerflow serve`` (webhooks, dashboard, API) and ``deerflow ui`` read them from the
``[gateway]`` table of the configuration file; each has a default that suits a gateway behind
a proxy. ``docs/operations/security.md`` lists them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from deerflow.errors import ConnectorError


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """Per-connection and per-server limits of the HTTP server.

    Attributes:
        idle_timeout: seconds a connection may stay idle, or take to send a request's headers
            (slow clients are closed after it).
        body_timeout: seconds a request may take to send its body (else 408).
        max_pending: requests answered at once by the webhooks before 429.
        api_max_pending: requests answered at once by the JSON API before 429.
        max_header_size: bytes of the request line and of one header line (else 400).
        max_headers: header lines of one request (else 400).
    """

    idle_timeout: float = 15.0
    body_timeout: float = 30.0
    max_pending: int = 256
    api_max_pending: int = 64
    max_header_size: int = 8190
    max_headers: int = 128

    @classmethod
    def configured(cls, config: Mapping[str, Any], **given: Any) -> HttpLimits:
        """The limits ``given`` (not ``None``), else the config's, else the defaults.

        Raises:
            ConnectorError: a configured limit that is not a positive number.
        """
        chosen: dict[str, Any] = {}
        for field in fields(cls):
            value = given.get(field.name)
            if value is None:
                value = config.get(field.name)
            if value is None:
                continue
            kind = int if field.type == "int" else float
            try:
                number = kind(value)
            except (TypeError, ValueError):
                number = 0
            if isinstance(value, bool) or number <= 0:
                raise ConnectorError(
                    f"[gateway] {field.name} must be a positive number, not {value!r}",
                    retriable=False,
                )
            chosen[field.name] = number
        return cls(**chosen)

    def server_options(self) -> dict[str, Any]:
        """Keyword arguments of ``aiohttp.web.AppRunner`` that apply these limits."""
        return {
            "keepalive_timeout": self.idle_timeout,
            "max_line_size": self.max_header_size,
            "max_field_size": self.max_header_size,
            "max_headers": self.max_headers,
        }
