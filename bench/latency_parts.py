"""Parts of the latency scenario: the open-loop sender, HDR percentiles, and the baselines."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.harness import Metrics
from bench.relay import FETCH_MAX_WAIT_MS, create_topics

Send = Callable[[float], Coroutine[Any, Any, None]]


async def open_loop(rate: float, count: int, send: Send) -> None:
    """Call ``send(t)`` at ``t = start + i / rate`` for ``count`` sends, never waiting for one.

    ``t`` is the scheduled time (``time.time()`` clock): a send that starts late still
    carries the time it should have started at.
    """
    start = time.time() + 0.05
    pending: set[asyncio.Task[None]] = set()
    for i in range(count):
        scheduled = start + i / rate
        delay = scheduled - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(send(scheduled))
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        await asyncio.gather(*pending)


def latency_metrics(seconds: list[float]) -> Metrics:
    """p50 and p99 in ms of latencies in seconds, through an HDR histogram (µs, 3 digits).

    Without ``hdrhistogram`` (the ``bench`` extra) the exact nearest-rank percentiles of the
    samples are used instead; with a few hundred samples the two agree to within 0.1 %.
    """
    try:
        from hdrh.histogram import HdrHistogram
    except ImportError:
        ordered = sorted(seconds)

        def rank(q: float) -> float:
            return 1000 * ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]

        return {"p50_ms": rank(0.50), "p99_ms": rank(0.99)}
    histogram = HdrHistogram(1, 120_000_000, 3)
    for value in seconds:
        histogram.record_value(max(1, round(value * 1e6)))
    return {
        "p50_ms": histogram.get_value_at_percentile(50) / 1000,
        "p99_ms": histogram.get_value_at_percentile(99) / 1000,
    }


class ProduceConsumeBaseline:
    """Raw produce→consume on one topic: a plain consumer records ``now - t``."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap, self.topic = bootstrap, topic
        self.producer: Any = None
        self._consumer: Any = None
        self._reader: asyncio.Task[None] | None = None
        self.seen: list[float] = []
        self._wanted = 0
        self._enough = asyncio.Event()

    async def start(self) -> None:
        """Create the topic, connect, and start reading it from offset 0."""
        await create_topics(self.bootstrap, {self.topic: 1})
        self.producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=0)
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        )
        await self.producer.start()
        await self._consumer.start()
        self._consumer.assign([TopicPartition(self.topic, 0)])
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=100)
            now = time.time()
            for records in batch.values():
                self.seen.extend(now - orjson.loads(r.value)["t"] for r in records)
            if len(self.seen) >= self._wanted:
                self._enough.set()

    async def stop(self) -> None:
        """Stop reading and disconnect; idempotent."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        for client in (self.producer, self._consumer):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.stop()
        self.producer = self._consumer = None

    def sender(self, topic: str) -> Send:
        """A send function producing ``{"t": t}`` to ``topic`` (acks=all)."""

        async def send(sent: float) -> None:
            await self.producer.send_and_wait(topic, orjson.dumps({"t": sent}))

        return send

    async def measure(self, count: int, rate: float, timeout: float = 60.0) -> Metrics:
        """One open-loop iteration against the plain consumer."""
        return await self._iteration(count, rate, self.sender(self.topic), timeout)

    async def _iteration(self, count: int, rate: float, send: Send, timeout: float) -> Metrics:
        self.seen.clear()
        self._wanted = count
        self._enough.clear()
        await open_loop(rate, count, send)
        await asyncio.wait_for(self._enough.wait(), timeout)
        return latency_metrics(self.seen[:count])


class WebhookBaseline(ProduceConsumeBaseline):
    """An aiohttp server whose handler only produces the body to Kafka, plus its consumer."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(bootstrap, topic)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.url = ""

    async def start(self) -> None:
        """Start the consumer side, the server on a free port, and a client session."""
        await super().start()
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/hook"
        self._session = aiohttp.ClientSession()

    async def _handle(self, request: web.Request) -> web.Response:
        await self.producer.send_and_wait(self.topic, await request.read())
        return web.json_response({"accepted": True}, status=202)

    async def stop(self) -> None:
        """Close the client and the server, then the Kafka side."""
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await super().stop()

    def poster(self, url: str) -> Send:
        """A send function POSTing ``{"t": t}`` to ``url``."""

        async def post(sent: float) -> None:
            assert self._session is not None
            async with self._session.post(
                url, data=orjson.dumps({"t": sent}), headers={"Content-Type": "application/json"}
            ) as reply:
                await reply.read()
                if reply.status >= 300:
                    raise RuntimeError(f"POST {url}: HTTP {reply.status}")

        return post

    async def measure(self, count: int, rate: float, timeout: float = 60.0) -> Metrics:
        """One open-loop iteration through the produce-only handler."""
        return await self._iteration(count, rate, self.poster(self.url), timeout)
