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
so a broker that costs more per message shows, and ``consume_cpu_us`` the CPU per message of
reading the same messages back (aiokafka's ``getmany``, confluent-kafka's ``consume``, 5,000
at most per call). ``client=confluent`` is deerflow's own producer of that option
(:mod:`deerflow.log._kafkaconfluent`), which hands each poll's reports to the loop at once.

``python -m bench.kafka_clients engine [--runs 500,5000] [--pairs 3] [--rounds 1]`` measures
the clients on the engine's own paths instead: the chains of scenario a's limit rows (a driver
here, one ``deerflow worker`` process, 4 partitions) on ``kafka://...?client=aiokafka`` and
``?client=confluent`` (the producer of every history and task record; consumers are aiokafka's
in both), beside the tuned relay (:func:`bench.relay.relay_rounds`), the three in turns whose
order rotates every pass. Each line: steps/s (relay: messages/s), the p99 of a chain's time ÷
its steps, the worker's CPU per step, and the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable

from bench.context import BROKERS, BenchContext
from bench.harness import Settings
from bench.relay import relay_rounds
from bench.scaling import measure
from deerflow.testing import Service, ServiceUnavailable

#: partitions of the engine comparison's topics, as in scenario a's limit rows
ENGINE_PARTITIONS = 4

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


TOTAL = IN_FLIGHT + ONE_BY_ONE + 1  # messages each producer leaves in its topic
CONSUME_BATCH = 5000


async def _aiokafka(bootstrap: str) -> dict[str, float]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await producer.start()
    try:

        async def enqueue() -> asyncio.Future[object]:
            return await producer.send("clients-aiokafka", VALUE)  # type: ignore[no-any-return]

        out = await _measure(enqueue)
    finally:
        await producer.stop()
    # No group: every partition of the topic is this consumer's, from its start.
    consumer = AIOKafkaConsumer(
        "clients-aiokafka",
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        cpu, seen = time.process_time(), 0
        while seen < TOTAL:
            batch = await consumer.getmany(timeout_ms=1000, max_records=CONSUME_BATCH)
            seen += sum(len(records) for records in batch.values())
        out["consume_cpu_us"] = (time.process_time() - cpu) / seen * 1e6
    finally:
        await consumer.stop()
    return out


def _confluent_consume(bootstrap: str, topic: str) -> float:
    """CPU µs per message reading every partition of ``topic`` from its start, batches of
    5,000."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"{topic}-reader", "enable.auto.commit": False}
    )
    try:
        partitions = consumer.list_topics(topic, 10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        cpu, seen = time.process_time(), 0
        while seen < TOTAL:
            seen += len(consumer.consume(CONSUME_BATCH, 1.0))
        return (time.process_time() - cpu) / seen * 1e6
    finally:
        consumer.close()


async def _confluent(bootstrap: str) -> dict[str, float]:
    """confluent-kafka as a plain asyncio program would use it: one loop wake-up per report."""
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
        out = await _measure(enqueue)
    finally:
        stop.set()
        poller.join()
        producer.flush(5)
    out["consume_cpu_us"] = _confluent_consume(bootstrap, "clients-confluent")
    return out


async def _deerflow_confluent(bootstrap: str) -> dict[str, float]:
    """The producer of ``kafka://...?client=confluent``: one loop wake-up per poll's reports."""
    from deerflow.log._kafkaconfluent import ConfluentProducer

    producer = ConfluentProducer(bootstrap, "bench", 0, False, 10.0)
    await producer.start()

    async def enqueue() -> asyncio.Future[object]:
        return await producer.send("clients-deerflow", VALUE)  # type: ignore[return-value]

    try:
        out = await _measure(enqueue)
    finally:
        await producer.stop()
    out["consume_cpu_us"] = _confluent_consume(bootstrap, "clients-deerflow")
    return out


def _on(broker: Service) -> None:
    clients = (
        ("aiokafka", _aiokafka),
        ("confluent-kafka", _confluent),
        ("client=confluent", _deerflow_confluent),
    )
    for name, run in clients:
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


ENGINE_SIDES = ("relay", "aiokafka", "confluent")


async def _engine_side(ctx: BenchContext, side: str, runs: int, rounds: int) -> str:
    broker = ctx.kafka_service
    if side == "relay":
        rate, p99 = await relay_rounds(
            ctx.kafka_bootstrap(), ctx.workdir, ctx.prefix("r"), ENGINE_PARTITIONS, runs, rounds
        )
        return f"{rate:8,.0f} msg/s    p99 step {p99:6.1f} ms"
    url = ctx.kafka_url_with(client=side)
    got = await measure(ctx, url, broker, 1, runs, ENGINE_PARTITIONS, rounds)
    return (
        f"{got.rate:8,.0f} steps/s  p99 step {got.step_p99_ms:6.1f} ms  worker CPU per step "
        f"{1e6 / got.steps_per_worker_cpu_s:5.0f} µs"
    )


async def _engine(args: argparse.Namespace) -> None:
    ctx = BenchContext(quick=False, settings=Settings())
    try:
        for runs in (int(r) for r in args.runs.split(",")):
            for n in range(args.pairs):
                shift = n % len(ENGINE_SIDES)
                for side in ENGINE_SIDES[shift:] + ENGINE_SIDES[:shift]:
                    line = await _engine_side(ctx, side, runs, args.rounds)
                    load = os.getloadavg()[0]
                    print(
                        f"{runs:5} chains  pass {n + 1}  {side:9} {line}  load {load:.1f}",
                        flush=True,
                    )
    finally:
        ctx.close()


def main(argv: list[str] | None = None) -> None:
    """Print both clients' figures on each broker named (``tansu,apache`` by default), or
    with ``engine`` first, on the engine's paths (see the module docstring)."""
    try:
        import confluent_kafka  # noqa: F401
    except ImportError:
        raise SystemExit("pip install confluent-kafka first") from None
    words = argv if argv is not None else sys.argv[1:]
    if words[:1] == ["engine"]:
        parser = argparse.ArgumentParser(prog="python -m bench.kafka_clients engine")
        parser.add_argument("--runs", default="500,5000", help="chains in flight, per size")
        parser.add_argument("--pairs", type=int, default=3, help="passes over the three sides")
        parser.add_argument("--rounds", type=int, default=1, help="timed rounds per measurement")
        asyncio.run(_engine(parser.parse_args(words[1:])))
        return
    names = words or ["tansu,apache"]
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
