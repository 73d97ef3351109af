"""The broker's limit for scenario a: an aiokafka consume→produce relay, closed loop.

``M`` messages (one per "chain") each go round the relay ``hops`` times: a member consumes a
batch (``getmany``, as the engine's worker does), produces each message's next hop with
``acks=all`` and the engine's ``linger_ms``, waits for the acks, then commits its offsets, which
is the engine worker's cycle minus the engine. The last hop goes to a ``done`` topic that the
driver reads. Members run as subprocesses (``python -m bench.relay ...``), one per worker
process of the engine side, splitting the partitions between them.

``--tuned`` makes it the throughput-bound limit instead: batched as a client tuned for
throughput would be (``linger_ms`` :data:`TUNED_LINGER_MS`, 1 MB batches, up to
:data:`TUNED_MAX_RECORDS` records per ``getmany``), for the high-concurrency rows where every
chain is in flight at once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.workloads import CHAIN_STEPS
from deerflow.eventstore.kafka import KafkaSettings
from deerflow.testing import WorkerProcesses

# The engine's own client settings, so the relay batches and waits exactly as the engine does
# (on Tansu a parked fetch is not woken by new data: fetch_max_wait_ms bounds each hop).
_ENGINE = KafkaSettings(bootstrap="-")
LINGER_MS = _ENGINE.linger_ms
FETCH_MAX_WAIT_MS: int = getattr(_ENGINE, "fetch_max_wait_ms", 500)
MAX_RECORDS = 500
#: A throughput-tuned client: batches wait a little to fill, and fetches take many records.
TUNED_LINGER_MS = 5
TUNED_MAX_RECORDS = 5000
TUNED_BATCH_BYTES = 1 << 20


def _producer_options(tuned: bool) -> dict[str, Any]:
    if tuned:
        return {"linger_ms": TUNED_LINGER_MS, "max_batch_size": TUNED_BATCH_BYTES}
    return {"linger_ms": LINGER_MS}


async def create_topics(bootstrap: str, topics: dict[str, int]) -> None:
    """Create each topic with its partition count (they are fresh names)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, count, 1) for name, count in topics.items()])
    finally:
        await admin.close()


async def _relay_batch(
    producer: Any, batch: dict[Any, list[Any]], topic: str, done: str, hops: int
) -> None:
    sends = []
    for records in batch.values():
        for record in records:
            chain, hop = record.value.split(b":")
            nxt = int(hop) + 1
            target = done if nxt >= hops else topic
            sends.append(
                await producer.send(target, chain + b":" + str(nxt).encode(), key=record.key)
            )
    await asyncio.gather(*sends)


async def member(
    bootstrap: str, topic: str, done: str, partitions: list[int], hops: int, tuned: bool = False
) -> None:
    """Relay ``partitions`` of ``topic`` until SIGTERM (``tuned``: see the module docstring)."""
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    if not partitions:
        await stop.wait()  # more members than partitions: idle, as a surplus engine worker is
        return
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=f"{topic}.relay",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", **_producer_options(tuned))
    max_records = TUNED_MAX_RECORDS if tuned else MAX_RECORDS
    await consumer.start()
    await producer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in partitions])
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=100, max_records=max_records)
            if batch:
                await _relay_batch(producer, batch, topic, done, hops)
                await consumer.commit()
    finally:
        await producer.stop()
        await consumer.stop()


class RelayDriver:
    """Feeds chains into the relay and waits for their last hops on the ``done`` topic."""

    def __init__(self, bootstrap: str, topic: str, done: str, *, tuned: bool = False) -> None:
        self.bootstrap, self.topic, self.done = bootstrap, topic, done
        self.tuned = tuned
        self._producer: Any = None
        self._consumer: Any = None
        self._round = 0

    async def start(self) -> None:
        """Connect; the ``done`` reader starts at offset 0 of the fresh topic."""
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", **_producer_options(self.tuned)
        )
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        )
        await self._producer.start()
        await self._consumer.start()
        self._consumer.assign([TopicPartition(self.done, 0)])

    async def stop(self) -> None:
        """Disconnect; idempotent."""
        for client in (self._producer, self._consumer):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.stop()
        self._producer = self._consumer = None

    async def round(self, chains: int, timeout: float = 120.0) -> float:
        """Send ``chains`` chains and wait for all; returns the seconds it took.

        :attr:`ended` then holds the seconds from the start to each chain's end.
        """
        self._round += 1
        self.ended: list[float] = []
        started = time.perf_counter()
        sends = [
            await self._producer.send(
                self.topic, f"{self._round}.{i}:0".encode(), key=f"{self._round}.{i}".encode()
            )
            for i in range(chains)
        ]
        await asyncio.gather(*sends)
        seen = 0
        async with asyncio.timeout(timeout):
            while seen < chains:
                batch = await self._consumer.getmany(timeout_ms=100)
                got = sum(len(records) for records in batch.values())
                self.ended += [time.perf_counter() - started] * got
                seen += got
        return time.perf_counter() - started


def member_argv(
    bootstrap: str,
    topic: str,
    done: str,
    member: int,
    members: int,
    partitions: int,
    hops: int,
    *,
    tuned: bool = False,
) -> list[str]:
    """The command of relay member ``member`` of ``members``, which takes every
    ``members``-th partition of ``topic``'s ``partitions``."""
    mine = ",".join(str(p) for p in range(partitions) if p % members == member)
    argv = [sys.executable, "-m", "bench.relay", bootstrap, topic, done, mine, str(hops)]
    return argv + (["--tuned"] if tuned else [])


async def relay_rounds(
    bootstrap: str, workdir: Path, prefix: str, partitions: int, runs: int, rounds: int
) -> tuple[float, float]:
    """The tuned relay on fresh topics (one member process): ``runs`` chains of
    :data:`~bench.workloads.CHAIN_STEPS` hops, a warm-up round then ``rounds`` timed ones.

    Returns:
        Messages per second over the timed rounds, and the largest p99 over chains of a chain's
        time ÷ its hops, in ms.
    """
    topic, done = f"{prefix}-relay", f"{prefix}-relay-done"
    await create_topics(bootstrap, {topic: partitions, done: 1})
    driver = RelayDriver(bootstrap, topic, done, tuned=True)
    with WorkerProcesses(workdir / f"logs-{prefix}") as pool:
        pool.spawn(
            "relay", member_argv(bootstrap, topic, done, 0, 1, partitions, CHAIN_STEPS, tuned=True)
        )
        await driver.start()
        try:
            await driver.round(runs)
            seconds = p99 = 0.0
            for _ in range(rounds):
                seconds += await driver.round(runs)
                ordered = sorted(driver.ended)
                worst = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
                p99 = max(p99, worst / CHAIN_STEPS * 1000)
        finally:
            await driver.stop()
    return runs * CHAIN_STEPS * rounds / seconds, p99


def main() -> None:
    """``python -m bench.relay BOOTSTRAP TOPIC DONE PARTITIONS HOPS [--tuned]`` (partitions:
    ``0,2``)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("bootstrap")
    parser.add_argument("topic")
    parser.add_argument("done")
    parser.add_argument("partitions")
    parser.add_argument("hops", type=int)
    parser.add_argument("--tuned", action="store_true", help="batch for throughput")
    args = parser.parse_args()
    parts = [int(p) for p in args.partitions.split(",") if p]
    asyncio.run(member(args.bootstrap, args.topic, args.done, parts, args.hops, args.tuned))


if __name__ == "__main__":
    main()
