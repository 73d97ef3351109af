"""What deerflow's HTTP server takes from one client: the limits that keep it up under abuse.

``deerflow serve`` (webhooks, dashboard, API) and ``deerflow ui`` read them from the
``[gateway]`` table of the configuration file; each has a default that suits a gateway behind
a proxy. ``docs/operations/security.md`` lists them.
"""

from __future__ import annotations

import asyncio
import resource
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from aiohttp import web

from deerflow.errors import ConnectorError

_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Retry-After: 1\r\nConnection: close\r\nContent-Length: 38\r\n\r\n"
    b'{"error": "too many open connections"}'
)


def default_max_connections() -> int:
    """Connections held at once by default: 10,000, within 3/4 of the open-files limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 10_000
    return max(16, min(10_000, soft * 3 // 4))


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
        max_connections: connections held open at once; one more is answered 503 and closed
            (default: 10,000, or 3/4 of the process's open-files limit if lower).
    """

    idle_timeout: float = 15.0
    body_timeout: float = 30.0
    max_pending: int = 256
    api_max_pending: int = 64
    max_header_size: int = 8190
    max_headers: int = 128
    max_connections: int = 10_000

    @classmethod
    def configured(cls, config: Mapping[str, Any], **given: Any) -> HttpLimits:
        """The limits ``given`` (not ``None``), else the config's, else the defaults.

        Raises:
            ConnectorError: a configured limit that is not a positive number.
            TypeError: a keyword that names no limit.
        """
        unknown = sorted(set(given) - {field.name for field in fields(cls)})
        if unknown:
            raise TypeError(f"HttpLimits.configured() got unexpected keyword arguments {unknown}")
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
        chosen.setdefault("max_connections", default_max_connections())
        return cls(**chosen)

    def server_options(self) -> dict[str, Any]:
        """Keyword arguments of ``aiohttp.web.AppRunner`` that apply these limits."""
        return {
            "keepalive_timeout": self.idle_timeout,
            "max_line_size": self.max_header_size,
            "max_field_size": self.max_header_size,
            "max_headers": self.max_headers,
        }


class _Refused(asyncio.Protocol):
    """What a connection past the limit talks to: drops what it is sent, ends with the client.

    Its aiohttp handler is still told when it is gone (so it is counted out, and its idle
    timer, which closes it if the client never does, is cancelled).
    """

    def __init__(self, handler: Any) -> None:
        self._handler = handler

    def data_received(self, data: bytes) -> None:
        """Drop it."""

    def eof_received(self) -> bool:
        """The client is done: close."""
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        """Tell the connection's handler."""
        self._handler.connection_lost(exc)


def cap_connections(runner: web.AppRunner, limit: int) -> None:
    """Hold at most ``limit`` connections of ``runner``'s server; answer 503 to the others.

    aiohttp has no such limit: past the open-files limit, accepting fails and nobody is
    served. The server's ``connection_made``/``connection_lost`` hooks (called by each
    connection's handler) count the connections; one past the limit gets a 503 and is closed
    without any request of it being read.
    """
    server = runner.server
    if server is None:
        raise RuntimeError("cap_connections() needs a runner that is set up")
    made, lost = server.connection_made, server.connection_lost
    count = 0

    def connection_made(handler: Any, transport: asyncio.Transport) -> None:
        nonlocal count
        made(handler, transport)
        count += 1
        if count > limit:
            # Its bytes go nowhere from now on: no request of it is parsed, and closing finds
            # nothing unread (which would make the close a reset that loses the 503).
            transport.set_protocol(_Refused(handler))
            transport.write(_BUSY)
            transport.write_eof()  # the client reads the 503, then the end

    def connection_lost(handler: Any, exc: BaseException | None = None) -> None:
        nonlocal count
        count -= 1
        lost(handler, exc)

    server.connection_made = connection_made  # type: ignore[method-assign]
    server.connection_lost = connection_lost  # type: ignore[method-assign]
