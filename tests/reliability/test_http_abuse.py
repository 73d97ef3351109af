"""Guarantee: the webhook gateway refuses bad input cheaply, writes nothing for it, leaks no
secret, and stays bounded under a flood.

Criteria: bodies at the limit are accepted (202), one byte over and far over are refused (413,
also chunked without a length) before they are read; a lying ``Content-Length`` gets 400 or 408
(never a run); slow clients are cut off (408 for a slow body, the connection closed for slow
headers); missing and wrong API keys get the same 401 body and nothing is written; signed
requests replayed within the tolerance are the same run, stale or tampered ones are refused
(401); a flood gets 429 with ``Retry-After`` beyond ``max_pending`` and every 202 is a run; no
API key or signing secret appears in any log line or stored record.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO

import aiohttp
import orjson
import pytest

from deerflow import Engine
from deerflow.connectors import ApiKeys, WebhookGateway, sign
from deerflow.events import WebhookEvent
from deerflow.eventstore import open_log
from deerflow.eventstore.base import TopicPartition
from tests.engine.apps.sink import Sink
from tests.reliability import rawhttp
from tests.reliability.conftest import APPS
from tests.reliability.faults import FaultyLog
from tests.reliability.history_checker import check_log
from tests.reliability.support import all_finished, recording_workflow
from tests.services import unique_name

KEY = "k-live-7f3a9c2e5b1d"
SECRET = "whsec-4d8e2a6f0c9b"
LIMIT = 64 * 1024


@pytest.fixture
async def engine(sink: Sink) -> AsyncIterator[Engine]:
    async with Engine(f"memory://{unique_name('log')}", [recording_workflow(sink)]) as eng:
        yield eng


@pytest.fixture
async def gateway(engine: Engine) -> WebhookGateway:
    gw = WebhookGateway(engine, port=0, api_keys=ApiKeys([KEY]), body_timeout=1.0, idle_timeout=1.0)
    gw.add_webhook("on_event", WebhookEvent(path="/hook", auth="api_key", max_body=LIMIT))
    gw.add_webhook(
        "on_event",
        WebhookEvent(path="/signed", auth="hmac", signing_secrets=(SECRET,), name="signed"),
    )
    await engine.add_service(gw)
    return gw


@pytest.fixture(autouse=True)
def every_log_line(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Capture every logger at DEBUG, to look for secrets afterwards."""
    caplog.set_level(logging.DEBUG)
    return caplog


def json_of_size(size: int) -> bytes:
    """A JSON body of exactly ``size`` bytes."""
    return b'{"pad":"' + b"x" * (size - 10) + b'"}'


async def stored_records(engine: Engine) -> list[bytes]:
    """Every record of every deerflow topic of the engine."""
    values = []
    for topic in (engine.topics.history, engine.topics.tasks, engine.topics.dlq):
        for p in range(await engine.log.partition_count(topic)):
            values += [r.value for r in await engine.log.read_partition(TopicPartition(topic, p))]
    return values


def assert_no_secret(caplog: pytest.LogCaptureFixture, records: list[bytes]) -> None:
    for secret in (KEY, SECRET):
        assert secret not in caplog.text, f"{secret} in the logs"
        assert not any(secret.encode() in r for r in records), f"{secret} stored"


async def test_bodies_at_over_and_far_over_the_limit(engine, gateway, every_log_line):
    port, auth = gateway.port, {"X-API-Key": KEY, "Content-Type": "application/json"}
    at = await rawhttp.send(
        port,
        rawhttp.head("/hook", port, {**auth, "Content-Length": str(LIMIT)}),
        [json_of_size(LIMIT)],
    )
    over = await rawhttp.send(
        port,
        rawhttp.head("/hook", port, {**auth, "Content-Length": str(LIMIT + 1)}),
        [json_of_size(LIMIT + 1)],
    )
    chunk = b" " * 65536
    started = time.monotonic()
    far = await rawhttp.send(
        port,
        rawhttp.head("/hook", port, {**auth, "Content-Length": str(200 * 2**20)}),
        [chunk] * 3200,
    )
    chunked = await rawhttp.send(
        port,
        rawhttp.head("/hook", port, {**auth, "Transfer-Encoding": "chunked"}),
        [b"10000\r\n" + chunk + b"\r\n"] * 3200 + [b"0\r\n\r\n"],
    )
    elapsed = time.monotonic() - started
    assert (at.status, over.status, far.status, chunked.status) == (202, 413, 413, 413)
    assert elapsed < 10, "200 MB bodies must be refused without being read"
    await all_finished(engine, 1, within=20)
    assert len(await engine.list_runs()) == 1
    assert_no_secret(every_log_line, await stored_records(engine))


async def test_lying_content_length_and_slow_clients_start_nothing(engine, gateway):
    port, auth = gateway.port, {"X-API-Key": KEY}
    body = b'{"a": 1, "b": 2, "c": 3}'
    short = await rawhttp.send(
        port, rawhttp.head("/hook", port, {**auth, "Content-Length": "5"}), [body]
    )
    long = await rawhttp.send(
        port, rawhttp.head("/hook", port, {**auth, "Content-Length": "1000"}), [body]
    )
    both = await rawhttp.send(
        port,
        rawhttp.head(
            "/hook",
            port,
            {**auth, "Content-Length": str(len(body)), "Transfer-Encoding": "chunked"},
        ),
        [body],
    )
    garbage = await rawhttp.send(
        port, rawhttp.head("/hook", port, {**auth, "Content-Length": "12abc"}), [body]
    )

    async def trickle(parts: list[bytes]) -> AsyncIterator[bytes]:
        for part in parts:
            yield part
            await asyncio.sleep(0.3)

    slow_body = await rawhttp.send(
        port,
        rawhttp.head("/hook", port, {**auth, "Content-Length": str(len(body))}),
        trickle([bytes([b]) for b in body]),
    )
    slowloris = await rawhttp.closed_within(
        port,
        trickle([b"POST /hook HTTP/1.1\r\n", *(f"X-Pad-{i}: y\r\n".encode() for i in range(40))]),
        5.0,
    )
    assert short.status == 400  # 5 bytes of JSON is not JSON
    assert long.status == 408 and slow_body.status == 408
    assert both.status == 400 and garbage.status == 400
    assert slowloris, "a client trickling headers kept its connection"
    assert await engine.list_runs() == []


async def test_missing_and_wrong_keys_get_the_same_401_and_write_nothing(
    engine, gateway, every_log_line
):
    async with aiohttp.ClientSession() as http:
        answers = []
        for headers in (
            {},
            {"X-API-Key": "k-live-wrong"},
            {"Authorization": "Bearer nope"},
            {"X-API-Key": KEY[:-1]},
            {"Authorization": f"Basic {KEY}"},
        ):
            async with http.post(f"{gateway.url}/hook", json={"x": 1}, headers=headers) as r:
                answers.append((r.status, await r.read()))
    assert {status for status, _ in answers} == {401}
    assert len({body for _, body in answers}) == 1, "401 bodies differ: they leak which failed"
    assert await stored_records(engine) == []
    assert_no_secret(every_log_line, [])


async def test_signed_requests_replayed_are_one_run_and_stale_or_tampered_are_refused(
    engine, gateway, every_log_line
):
    body = orjson.dumps({"event": "push", "n": 1})
    signature = sign(body, SECRET)
    t, _, v1 = signature.partition(",")
    stale = sign(body, SECRET, timestamp=int(time.time()) - 400)
    async with aiohttp.ClientSession() as http:

        async def post(data: bytes, header: str) -> tuple[int, dict[str, str]]:
            async with http.post(
                f"{gateway.url}/signed", data=data, headers={"Deerflow-Signature": header}
            ) as r:
                return r.status, await r.json()

        replies = await asyncio.gather(
            *(post(body, signature) for _ in range(5)), post(body, f"{v1},{t},v1=ffff")
        )
        refused = [
            await post(body, stale),
            await post(body + b" ", signature),
            await post(b'{"event": "push", "n": 2}', signature),
            await post(body, "t=\u00b2,v1=" + v1[3:]),
            await post(body, f"t={'1' * 5000},{v1}"),
        ]
    assert {status for status, _ in replies} == {202}
    assert len({reply["run_id"] for _, reply in replies}) == 1, "a replay started another run"
    assert [status for status, _ in refused] == [401] * 5
    await all_finished(engine, 1, within=20)
    history = await check_log(engine.log, engine.topics.history)
    history.assert_ok(exact=True)
    assert len(history.runs) == 1
    assert_no_secret(every_log_line, await stored_records(engine))


async def test_a_flood_is_answered_429_with_retry_after_and_every_202_is_a_run(sink, rng):
    log = FaultyLog(open_log(f"memory://{unique_name('log')}"), delay=0.2, rng=rng)
    async with Engine(log, [recording_workflow(sink)]) as engine:
        gw = WebhookGateway(engine, port=0, max_pending=8)
        gw.add_webhook("on_event", WebhookEvent(path="/hook"))
        await engine.add_service(gw)
        peak = 0

        async def watch() -> None:
            nonlocal peak
            while True:
                peak = max(peak, gw.pending)
                await asyncio.sleep(0.005)

        watcher = asyncio.create_task(watch())
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:

            async def post(i: int) -> tuple[int, str | None, str | None]:
                async with http.post(
                    f"{gw.url}/hook", json={"i": i}, headers={"Idempotency-Key": f"flood-{i}"}
                ) as r:
                    body = await r.json()
                    return r.status, r.headers.get("Retry-After"), body.get("run_id")

            answers = await asyncio.gather(*(post(i) for i in range(300)))
        watcher.cancel()
        accepted = [str(run_id) for status, _, run_id in answers if status == 202]
        await all_finished(engine, len(accepted), within=60)
        history = await check_log(log.inner, engine.topics.history)
    statuses = [status for status, _, _ in answers]
    print(
        f"300 requests: {statuses.count(202)} accepted, {statuses.count(429)} refused, "
        f"peak {peak} in progress"
    )
    assert set(statuses) <= {202, 429}
    assert statuses.count(429) > 0 and statuses.count(202) > 0
    assert all(retry for status, retry, _ in answers if status == 429)
    assert peak <= 8
    history.assert_ok(accepted, exact=True)


def memory_kib(pid: int, field: str) -> int:
    """``VmRSS`` (resident now) or ``VmHWM`` (peak resident) of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
async def test_a_served_gateway_stays_flat_under_huge_bodies_and_never_logs_secrets(tmp_path):
    env = dict(
        os.environ,
        DEERFLOW_API_KEYS=KEY,
        DEERFLOW_WEBHOOK_SECRETS=SECRET,
        PYTHONPATH=str(Path.cwd()),
    )
    output = (tmp_path / "serve.log").open("w+b")
    server = serve(env, output)
    try:
        port = await listening_port(tmp_path / "serve.log", server)
        auth = {"X-API-Key": KEY}
        ok = await rawhttp.send(
            port, rawhttp.head("/hook", port, {**auth, "Content-Length": "2"}), [b"{}"]
        )
        before = memory_kib(server.pid, "VmRSS")
        chunk = b"x" * 65536
        huge = [
            rawhttp.send(
                port,
                rawhttp.head("/hook", port, {**auth, "Content-Length": str(50 * 2**20)}),
                [chunk] * 800,
                hostile=True,
            )
            for _ in range(8)
        ]
        huge += [
            rawhttp.send(
                port,
                rawhttp.head("/hook", port, {**auth, "Transfer-Encoding": "chunked"}),
                [b"10000\r\n" + chunk + b"\r\n"] * 800,
                hostile=True,
            )
            for _ in range(8)
        ]
        replies = await asyncio.gather(*huge)
        wrong = await rawhttp.send(
            port,
            rawhttp.head("/hook", port, {"X-API-Key": KEY[::-1], "Content-Length": "2"}),
            [b"{}"],
        )
        signed = await rawhttp.send(
            port,
            rawhttp.head(
                "/signed", port, {"Deerflow-Signature": sign(b"{}", SECRET), "Content-Length": "2"}
            ),
            [b"{}"],
        )
        peak = memory_kib(server.pid, "VmHWM")
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=20)
    output.seek(0)
    text = output.read().decode(errors="replace")
    print(f"served gateway: {before} KiB resident before 16 x 50 MiB bodies, peak {peak} KiB")
    assert ok.status == 202 and signed.status == 202 and wrong.status == 401
    assert {r.status for r in replies} <= {413, 0}, [r.status for r in replies]
    assert sum(r.status == 413 for r in replies) >= 8
    assert peak - before < 32 * 1024, f"memory grew {peak - before} KiB for refused bodies"
    assert KEY not in text and SECRET not in text


def serve(env: dict[str, str], output: IO[bytes]) -> subprocess.Popen[bytes]:
    """``deerflow serve`` on the webhook app, on a memory store and any free port."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "deerflow",
            "serve",
            str(APPS / "webhook_app.py"),
            "--store",
            f"memory://{unique_name('served')}",
            "--port",
            "0",
        ],
        env=env,
        stdout=output,
        stderr=subprocess.STDOUT,
    )


async def listening_port(log: Path, server: subprocess.Popen[bytes]) -> int:
    """The port ``deerflow serve`` announces once it is ready."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        match = re.search(rb"listening on http://127\.0\.0\.1:(\d+)", log.read_bytes())
        if match:
            return int(match[1])
        assert server.poll() is None, log.read_text()
        await asyncio.sleep(0.1)
    raise AssertionError(f"deerflow serve did not start: {log.read_text()}")
