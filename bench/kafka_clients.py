"""CPU per produced message: aiokafka against confluent-kafka (librdkafka), on Tansu and on
Apache Kafka.

``python -m bench.kafka_clients [tansu,apache]`` (needs ``pip install confluent-kafka``; the
Apache Kafka broker comes from :mod:`deerflow.testing`, Java and Maven) produces 200-byte
messages with ``acks=all`` and ``linger 0`` two ways: 20,000 enqueued, then their
acknowledgements awaited together (the client batches them), and one at a time, each
acknowledged before the next (how a run's step waits for its
outcome's append). confluent-kafka's delivery callbacks come from its own polling thread and
are handed to the event loop with ``call_soon_threadsafe``, as an asyncio event log would do.
The question it answers: would a librdkafka backend make deerflow's Kafka steps cheaper? Each
line also gives the broker's own CPU over that client's run (``broker_cpu``, share of one core),
so a broker that costs more per message shows.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Awaitable, Callable

from bench.context import BROKERS
from deerflow.testing import Service, ServiceUnavailable

IN_FLIGHT = 20_000
ONE_BY_ONE = 2_000
VALUE = b"x" * 200

#: enqueues one message and returns what resolves once the broker acknowledged it
Enqueue = Callable[[], Awaitable["asyncio.Future[object]"]]


async def _measure(enqueue: Enqueue) -> dict[str, float]:
    """CPU and wall µs per message, batched and one at a time.

    Batched is how deerflow's ``KafkaEventLog.append`` sends: every message enqueued in turn,
    then all acknowledgements awaited together.
    """
    await (await enqueue())  # connect and learn the metadata outside the measurement
    out = {}
    ways = (("in_flight", IN_FLIGHT, True), ("one_by_one", ONE_BY_ONE, False))
    for label, count, batched in ways:
        cpu, wall = time.process_time(), time.perf_counter()
        if batched:
            acks = [await enqueue() for _ in range(count)]
            await asyncio.gather(*acks)
        else:
            for _ in range(count):
                await (await enqueue())
        out[f"{label}_cpu_us"] = (time.process_time() - cpu) / count * 1e6
        out[f"{label}_wall_us"] = (time.perf_counter() - wall) / count * 1e6
    return out


async def _aiokafka(bootstrap: str) -> dict[str, float]:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await producer.start()
    try:

        async def enqueue() -> asyncio.Future[object]:
            return await producer.send("clients-aiokafka", VALUE)  # type: ignore[no-any-return]

        return await _measure(enqueue)
    finally:
        await producer.stop()


async def _confluent(bootstrap: str) -> dict[str, float]:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0})
    loop = asyncio.get_running_loop()
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            producer.poll(0.05)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()

    async def enqueue() -> asyncio.Future[object]:
        done: asyncio.Future[object] = loop.create_future()
        producer.produce(
            "clients-confluent",
            VALUE,
            on_delivery=lambda err, _msg: loop.call_soon_threadsafe(done.set_result, err),
        )
        return done

    try:
        return await _measure(enqueue)
    finally:
        stop.set()
        poller.join()
        producer.flush(5)


def _on(broker: Service) -> None:
    for name, run in (("aiokafka", _aiokafka), ("confluent-kafka", _confluent)):
        cpu, wall = broker.cpu_seconds(), time.monotonic()
        figures = asyncio.run(run(broker.address))
        figures["broker_cpu"] = (broker.cpu_seconds() - cpu) / (time.monotonic() - wall)
        print(
            f"{broker.name:13} {name:16} "
            + "  ".join(
                f"{k} {v:7.2f}" if k == "broker_cpu" else f"{k} {v:7.1f}"
                for k, v in figures.items()
            ),
            flush=True,
        )


def main(argv: list[str] | None = None) -> None:
    """Print both clients' figures on each broker named (``tansu,apache`` by default)."""
    try:
        import confluent_kafka  # noqa: F401
    except ImportError:
        raise SystemExit("pip install confluent-kafka first") from None
    names = (argv if argv is not None else sys.argv[1:]) or ["tansu,apache"]
    chosen = [name.strip() for name in names[0].split(",") if name.strip()]
    unknown = set(chosen) - set(BROKERS)
    if unknown:
        raise SystemExit(f"unknown brokers {sorted(unknown)}: choose from {', '.join(BROKERS)}")
    for name in chosen:
        try:
            broker = BROKERS[name]()
        except ServiceUnavailable as exc:
            raise SystemExit(str(exc)) from exc
        try:
            _on(broker)
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
