"""The broker's limit for scenario a: an aiokafka consume→produce relay, closed loop.

``M`` messages (one per "chain") each go round the relay ``hops`` times: a member consumes a
batch (``getmany``, as the engine's worker does), produces each message's next hop with
``acks=all`` and the engine's ``linger_ms``, waits for the acks, then commits its offsets, which
is the engine worker's cycle minus the engine. The last hop goes to a ``done`` topic that the
driver reads. Members run as subprocesses (``python -m bench.relay ...``), one per worker
process of the engine side, splitting the partitions between them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from deerflow.eventstore.kafka import KafkaSettings

# The engine's own client settings, so the relay batches and waits exactly as the engine does
# (on Tansu a parked fetch is not woken by new data: fetch_max_wait_ms bounds each hop).
_ENGINE = KafkaSettings(bootstrap="-")
LINGER_MS = _ENGINE.linger_ms
FETCH_MAX_WAIT_MS: int = getattr(_ENGINE, "fetch_max_wait_ms", 500)
MAX_RECORDS = 500


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


async def member(bootstrap: str, topic: str, done: str, partitions: list[int], hops: int) -> None:
    """Relay ``partitions`` of ``topic`` until SIGTERM."""
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
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=LINGER_MS)
    await consumer.start()
    await producer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in partitions])
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=100, max_records=MAX_RECORDS)
            if batch:
                await _relay_batch(producer, batch, topic, done, hops)
                await consumer.commit()
    finally:
        await producer.stop()
        await consumer.stop()


class RelayDriver:
    """Feeds chains into the relay and waits for their last hops on the ``done`` topic."""

    def __init__(self, bootstrap: str, topic: str, done: str) -> None:
        self.bootstrap, self.topic, self.done = bootstrap, topic, done
        self._producer: Any = None
        self._consumer: Any = None
        self._round = 0

    async def start(self) -> None:
        """Connect; the ``done`` reader starts at offset 0 of the fresh topic."""
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", linger_ms=LINGER_MS
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
        """Send ``chains`` chains and wait for all; returns the seconds it took."""
        self._round += 1
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
                seen += sum(len(records) for records in batch.values())
        return time.perf_counter() - started


def main() -> None:
    """``python -m bench.relay BOOTSTRAP TOPIC DONE PARTITIONS HOPS`` (partitions: ``0,2``)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("bootstrap")
    parser.add_argument("topic")
    parser.add_argument("done")
    parser.add_argument("partitions")
    parser.add_argument("hops", type=int)
    args = parser.parse_args()
    parts = [int(p) for p in args.partitions.split(",") if p]
    asyncio.run(member(args.bootstrap, args.topic, args.done, parts, args.hops))


if __name__ == "__main__":
    main()
