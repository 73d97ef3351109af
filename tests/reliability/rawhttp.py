"""A raw HTTP/1.1 client for abusive requests a polite client library will not send.

Lying ``Content-Length``, bodies far over a limit, bytes trickled slowly: the request is written
by hand on a socket while the answer is read concurrently, so an early answer (413 before the
body is sent) is seen even if the server then stops reading.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Reply:
    """An HTTP answer (``status`` 0: the connection closed without one)."""

    status: int
    headers: dict[str, str]
    body: bytes


def head(path: str, port: int, headers: dict[str, str], method: str = "POST") -> bytes:
    """The request line and headers."""
    lines = [
        f"{method} {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def _read_reply(reader: asyncio.StreamReader) -> Reply:
    line = await reader.readline()
    if not line:
        return Reply(0, {}, b"")
    status = int(line.split()[1])
    headers: dict[str, str] = {}
    while (raw := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = raw.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = await reader.readexactly(length) if length else b""
    return Reply(status, headers, body)


async def send(
    port: int,
    request_head: bytes,
    body: Iterable[bytes] | AsyncIterator[bytes] = (),
    *,
    timeout: float = 30.0,
    hostile: bool = False,
) -> Reply:
    """Write ``request_head`` then ``body``'s chunks; return the first answer.

    A polite client stops sending once answered; a ``hostile`` one goes on until the server
    closes the connection.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answer = asyncio.create_task(_read_reply(reader))
    try:
        writer.write(request_head)
        await writer.drain()
        chunks = body if isinstance(body, AsyncIterator) else _aiter(body)
        async for chunk in chunks:
            if answer.done() and not hostile:
                break  # answered early: stop sending, as a good client would
            writer.write(chunk)
            await writer.drain()
        return await asyncio.wait_for(answer, timeout)
    except (ConnectionError, OSError):
        return await asyncio.wait_for(answer, timeout)
    finally:
        answer.cancel()
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


async def _aiter(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def closed_within(port: int, data: AsyncIterator[bytes], seconds: float) -> bool:
    """Trickle ``data``; whether the server closes the connection within ``seconds``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def trickle() -> None:
        with contextlib.suppress(ConnectionError, OSError):
            async for chunk in data:
                writer.write(chunk)
                await writer.drain()

    feeding = asyncio.create_task(trickle())
    try:
        await asyncio.wait_for(reader.read(), seconds)  # b"" or an answer, then EOF
        return True
    except TimeoutError:
        return False
    finally:
        feeding.cancel()
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()
