"""Abusive HTTP against ``deerflow serve`` (webhooks, API and dashboard share its port), over raw
sockets: bodies over the limit, JSON nested 10,000 levels, huge headers, slow clients and a
thousand connections at once each get a clear 4xx or a closed connection; the server stays up,
its memory bounded, and other clients are served meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from deerflow.connectors._httplimits import HttpLimits
from deerflow.errors import ConnectorError
from tests.web.conftest import APP, Process, serving

IDLE_TIMEOUT = 1.0
BODY_TIMEOUT = 2.0
PENDING = 8
MAX_CONNECTIONS = 100


def serve_with(flags: Path, **settings: float) -> contextlib.AbstractContextManager[Process]:
    """``deerflow serve`` with these ``[gateway]`` settings in its configuration file."""
    config = flags / "deerflow.toml"
    config.write_text("[gateway]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items()))
    return serving(APP, f"sqlite:///{flags / 'abuse.db'}", flags, "--config", str(config))


@pytest.fixture
def server(isolated: Path) -> Iterator[Process]:
    """``deerflow serve`` with short timeouts and small pending limits."""
    limits = {"max_pending": PENDING, "api_max_pending": PENDING}
    with serve_with(
        isolated, idle_timeout=IDLE_TIMEOUT, body_timeout=BODY_TIMEOUT, **limits
    ) as proc:
        yield proc
        assert proc.process.poll() is None, "the server died"


def port_of(proc: Process) -> int:
    """The port the server listens on."""
    return int(urlsplit(proc.url).port or 0)


async def exchange(port: int, *parts: bytes, wait: float = 10.0) -> bytes:
    """Send ``parts`` on a fresh connection; the server's whole answer (or what came of it).

    An answer is whole once its ``Content-Length`` bytes are in, or the server closed: after a
    refused body the server may keep reading (and dropping) the rest for a while before it
    closes, as HTTP servers do so that the client sees the answer.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    received = b""
    try:
        for part in parts:
            writer.write(part)
            try:
                await writer.drain()
            except ConnectionError:
                break  # the server answered and closed while we were still sending
        async with asyncio.timeout(wait):
            while not _whole(received) and (chunk := await reader.read(65536)):
                received += chunk
    except ConnectionError:
        pass
    finally:
        writer.close()
    return received


def _whole(answer: bytes) -> bool:
    head, sep, body = answer.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


def status_of(answer: bytes) -> int:
    """The status code of a raw HTTP answer (0 if the connection closed without one)."""
    if not answer.startswith(b"HTTP/1."):
        return 0
    return int(answer.split(b" ", 2)[1])


def request(method: str, path: str, *headers: str, body: bytes = b"") -> bytes:
    """A raw HTTP/1.1 request that asks the server to close afterwards."""
    lines = [f"{method} {path} HTTP/1.1", "Host: localhost", "Connection: close", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def rss_mib(pid: int, field: str = "VmHWM") -> float:
    """A memory figure of process ``pid`` in MiB (peak resident by default)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} for {pid}")


async def served_normally(port: int) -> bool:
    """Whether a well-behaved client gets its answer within two seconds."""
    answer = await exchange(port, request("GET", "/api/runs?limit=1"), wait=2.0)
    return status_of(answer) == 200


async def test_bodies_over_the_limit_are_refused_whether_declared_or_chunked(server: Process):
    port = port_of(server)
    declared = "Content-Length: 10000000000"  # 10 GB announced, a few bytes sent
    for path in ("/hooks/etl", "/api/runs/x/cancel"):
        started = time.monotonic()
        answer = await exchange(port, request("POST", path, declared, body=b"{}"))
        assert status_of(answer) == 413, (path, answer[:200])
        assert b"Connection: close" in answer
        assert time.monotonic() - started < 3  # refused before reading
    assert b"body over 1048576 bytes" in await exchange(
        port, request("POST", "/hooks/etl", declared, body=b"{}")
    )

    def chunked(total: int) -> list[bytes]:
        piece = b"1000\r\n" + b" " * 4096 + b"\r\n"
        return [request("POST", "/", "Transfer-Encoding: chunked")] + [piece] * (total // 4096)

    for path, total in (("/hooks/etl", 2 * 1024 * 1024), ("/api/runs/x/cancel", 128 * 1024)):
        parts = chunked(total)
        parts[0] = parts[0].replace(b"POST / ", f"POST {path} ".encode())
        answer = await exchange(port, *parts, b"0\r\n\r\n")
        assert status_of(answer) == 413, (path, answer[:200])
    api = await exchange(port, request("POST", "/api/runs/x/cancel", declared))
    assert api.endswith(b"}") and b'"error"' in api  # the API answers JSON
    assert await served_normally(port)


async def test_json_nested_ten_thousand_levels_is_a_400(server: Process):
    port = port_of(server)
    for body in (b"[" * 10_000 + b"]" * 10_000, b'{"a":' * 10_000 + b"1" + b"}" * 10_000):
        for path in ("/hooks/etl", "/api/runs/x/cancel"):
            length = f"Content-Length: {len(body)}"
            answer = await exchange(port, request("POST", path, length, body=body))
            assert status_of(answer) == 400, (path, answer[:300])
            assert b"not JSON" in answer or b"cannot be accepted" in answer
    assert await served_normally(port)


async def test_huge_headers_get_a_400_and_the_connection_closed(server: Process):
    port = port_of(server)
    huge_value = request("GET", "/api/runs", "X-Padding: " + "a" * 100_000)
    many = request("GET", "/api/runs", *(f"X-H{i}: {i}" for i in range(1_000)))
    long_line = request("GET", "/api/runs?" + "q" * 20_000)
    for raw in (huge_value, many, long_line):
        answer = await exchange(port, raw)
        assert status_of(answer) in (400, 413, 414, 431), answer[:200]
    assert await served_normally(port)


async def test_slow_clients_are_closed_and_others_served_meanwhile(server: Process):
    port = port_of(server)
    slow = []
    for _ in range(1_000):  # slowloris: half a request each, then nothing
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /hooks/etl HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        slow.append((reader, writer))
    started = time.monotonic()
    assert await served_normally(port)
    assert time.monotonic() - started < 2

    async def closed(reader: asyncio.StreamReader) -> bool:
        async with asyncio.timeout(IDLE_TIMEOUT + 5):
            return await reader.read() == b""

    assert all(await asyncio.gather(*(closed(r) for r, _ in slow)))
    for _, writer in slow:
        writer.close()
    # A body that trickles in: 408 once the body timeout has passed.
    started = time.monotonic()
    answer = await exchange(
        port,
        request("POST", "/hooks/etl", "Content-Length: 1000", body=b"{"),
        wait=BODY_TIMEOUT + 5,
    )
    assert status_of(answer) == 408 and time.monotonic() - started >= BODY_TIMEOUT - 0.1
    assert await served_normally(port)


async def test_a_thousand_connections_at_once_get_answers_or_a_close_never_a_5xx(
    server: Process,
):
    port = port_of(server)
    pid = server.process.pid
    await served_normally(port)
    before = rss_mib(pid, "VmRSS")

    async def one(i: int) -> int:
        if i % 2:
            raw = request("POST", "/hooks/etl", "Content-Length: 1", body=b"{")
        else:
            raw = request("GET", "/api/openapi.json")
        try:
            return status_of(await exchange(port, raw, wait=20.0))
        except (TimeoutError, OSError):
            return -1

    started = time.monotonic()
    statuses = await asyncio.gather(*(one(i) for i in range(1_000)))
    took = time.monotonic() - started
    counts = {code: statuses.count(code) for code in set(statuses)}
    assert set(counts) <= {200, 400, 429, 0}, counts  # answered, refused, or closed
    assert counts.get(200, 0) > 0 and counts.get(400, 0) > 0, counts
    assert await served_normally(port)
    grown = rss_mib(pid) - before
    print(f"1,000 connections: {counts} in {took:.1f}s; peak RSS grew {grown:.0f} MiB")
    assert grown < 200


async def test_requests_past_the_pending_limit_get_429_until_the_slow_ones_are_done(
    server: Process,
):
    port = port_of(server)
    trickling = [
        asyncio.create_task(
            exchange(
                port,
                request("POST", path, "Content-Length: 100", body=b"{"),
                wait=BODY_TIMEOUT + 5,
            )
        )
        for path in ["/hooks/etl"] * PENDING + ["/api/runs/x/cancel"] * PENDING
    ]
    await asyncio.sleep(0.5)  # every one of them is now waiting for its body
    hook = await exchange(port, request("POST", "/hooks/etl", "Content-Length: 2", body=b"{}"))
    api = await exchange(port, request("GET", "/api/runs"))
    for answer in (hook, api):
        assert status_of(answer) == 429 and b"Retry-After: 1" in answer, answer[:300]
        assert b"too many requests in progress" in answer
    assert {status_of(a) for a in await asyncio.gather(*trickling)} == {408}
    assert await served_normally(port)


def test_a_limit_that_is_not_a_positive_number_is_refused_naming_it():
    assert HttpLimits.configured({"idle_timeout": "2.5"}).idle_timeout == 2.5
    assert HttpLimits.configured({"max_pending": 9}, max_pending=3).max_pending == 3
    for bad in ("soon", 0, -1, True):
        with pytest.raises(ConnectorError, match=r"\[gateway\] max_headers must be a positive"):
            HttpLimits.configured({"max_headers": bad})
    with pytest.raises(TypeError, match=r"keyword arguments \['max_pendng'\]"):
        HttpLimits.configured({}, max_pendng=3)


def test_the_limits_the_security_guide_shows_are_the_defaults():
    import re
    import tomllib

    from deerflow.web._session import DEFAULT_TTL
    from tests.web.conftest import ROOT

    guide = (ROOT / "docs" / "operations" / "security.md").read_text()
    (block,) = [b for b in re.findall(r"```toml\n(.*?)```", guide, re.S) if "idle_timeout" in b]
    table = tomllib.loads(block)["gateway"]
    assert replace(HttpLimits.configured(table), max_connections=10_000) == HttpLimits()
    assert table["session_ttl"] == DEFAULT_TTL


async def test_connections_past_the_limit_get_503_and_are_closed(isolated: Path):
    with serve_with(isolated, max_connections=MAX_CONNECTIONS) as server:
        await connections_past_the_limit(port_of(server))
        assert server.process.poll() is None
        logged = server.output()
        assert "Traceback" not in logged and "exception" not in logged.lower(), logged


async def connections_past_the_limit(port: int) -> None:
    held = []
    for _ in range(MAX_CONNECTIONS + 5):  # a request each, half sent
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /api/runs HTTP/1.1\r\nHost: localhost\r\n")
        held.append((reader, writer))

    async def answer(reader: asyncio.StreamReader) -> bytes:
        try:
            async with asyncio.timeout(1.0):
                return await reader.read()  # the whole answer, up to the close
        except TimeoutError:
            return b"(still open)"

    answers = await asyncio.gather(*(answer(r) for r, _ in held))
    refused = [a for a in answers if a != b"(still open)"]
    assert len(refused) == 5, [a[:60] for a in refused]
    for answered in refused:
        assert status_of(answered) == 503 and b"Retry-After: 1" in answered
        assert answered.endswith(b'{"error": "too many open connections"}')
    assert status_of(await exchange(port, request("GET", "/api/runs"))) == 503
    for _, writer in held:
        writer.close()
    await asyncio.sleep(0.5)  # the server sees them closed
    assert await served_normally(port)
