"""b. Trigger → first task latency, open loop at a fixed rate, from the scheduled send time.

Each trigger carries its scheduled send time ``t``; the workflow's first task records
``time.time() - t`` (so a sender falling behind counts against the engine: no coordinated
omission). Latencies go into an HDR histogram per iteration; p50 and p99 are reported.

* Kafka: messages to a topic a ``KafkaEvent`` trigger consumes, on an in-process engine on
  Kafka. Baseline: the same open-loop produce to a topic read by a plain consumer (same
  ``fetch_max_wait_ms``): raw produce→consume.
* Webhook: POSTs to the ``WebhookGateway``. Baseline: an aiohttp handler that only produces
  the body to Kafka (``acks=all``) and answers 202, with a consumer reading it (HTTP →
  produce → consume).
* S3: objects put into a moto bucket whose notifications reach an ``S3Event`` trigger through
  SQS (the key carries ``t``). Reported without a goal or baseline.
* Schedule: ``Schedule(every="1s")`` on an engine on Kafka; the first task records
  ``time.time()`` minus the tick's ``scheduled_time``. Reported without a goal or baseline.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench.context import BenchContext
from bench.harness import Comparison, Goal, Metric, Metrics, skipped_rows
from bench.latency_parts import (
    ProduceConsumeBaseline,
    Send,
    WebhookBaseline,
    latency_metrics,
    open_loop,
)
from bench.services import ServiceUnavailable
from deerflow import Engine, Workflow
from deerflow.connectors import WebhookGateway, sources_for
from deerflow.events import KafkaEvent, S3Event, Schedule, WebhookEvent

SCENARIO = "b. trigger latency"
SINK: list[float] = []


def _recording_workflow(name: str, trigger: Any, sent_at: Callable[[Any], float]) -> Workflow:
    wf = Workflow(name=name)
    wf.add_trigger(trigger)

    @wf.task(id="first")
    async def first(context: Any) -> None:
        SINK.append(time.time() - sent_at(context.trigger_event))

    return wf


async def _collect(count: int, send: Send, rate: float, timeout: float = 120.0) -> Metrics:
    SINK.clear()
    await open_loop(rate, count, send)
    return await _sunk(count, timeout)


async def _sunk(count: int, timeout: float) -> Metrics:
    """The latencies of the first ``count`` first tasks, once they ran."""
    deadline = time.monotonic() + timeout
    while len(SINK) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(SINK)} of {count} first tasks ran")
        await asyncio.sleep(0.01)
    return latency_metrics(SINK[:count])


def _alone(
    what: str, label: str, measure: Callable[[], Awaitable[Metrics]], note: str
) -> Comparison:
    """A latency row without baseline or goal: p50 and p99."""
    return Comparison(
        SCENARIO,
        what,
        "",
        label,
        None,
        measure,
        [Metric("p50_ms", "p50", "ms"), Metric("p99_ms", "p99", "ms")],
        note=note,
    )


async def _serve_and_compare(
    ctx: BenchContext, wf: Workflow, prefix: str, comparison: Comparison
) -> None:
    """``comparison``, with ``wf``'s triggers served by an engine on Kafka."""
    async with Engine(ctx.kafka_url(), [wf], prefix=prefix) as engine:
        for source in sources_for(engine, [wf]):
            await engine.add_service(source)
        await ctx.compare(comparison)


async def _kafka_and_webhook(ctx: BenchContext) -> None:
    s = ctx.sizes
    prefix = ctx.prefix("b")
    topic = f"{prefix}.triggers"
    kafka_wf = _recording_workflow(
        "bench_kafka_trigger",
        KafkaEvent(topic=topic, consumer_group=f"{prefix}.trigger"),
        lambda e: float(e.message["t"]),
    )
    hook_wf = _recording_workflow(
        "bench_webhook_trigger",
        WebhookEvent(path="/bench", auth="none"),
        lambda e: float(e.body["t"]),
    )
    bootstrap = ctx.kafka_bootstrap()
    raw = ProduceConsumeBaseline(bootstrap, f"{prefix}.raw")
    hook = WebhookBaseline(bootstrap, f"{prefix}.hook")
    async with Engine(ctx.kafka_url(), [kafka_wf, hook_wf], prefix=prefix) as engine:
        await engine.log.ensure_topic(topic, 4)
        gateway = WebhookGateway(engine, port=0)
        for source in sources_for(engine, [kafka_wf, hook_wf], gateway=gateway):
            await engine.add_service(source)
        await engine.add_service(gateway)
        await raw.start()
        await hook.start()
        try:
            await ctx.compare(
                Comparison(
                    SCENARIO,
                    f"kafka trigger, {s.latency_rate:g}/s",
                    "raw produce→consume",
                    "KafkaEvent → first task",
                    lambda: raw.measure(s.latency_count, s.latency_rate),
                    lambda: _collect(s.latency_count, raw.sender(topic), s.latency_rate),
                    [
                        Metric("p50_ms", "p50", "ms", Goal("<=", 2.0)),
                        Metric("p99_ms", "p99", "ms", Goal("<=", 3.0)),
                    ],
                    note=f"{s.latency_count} triggers per iteration, open loop",
                )
            )
            await ctx.compare(
                Comparison(
                    SCENARIO,
                    f"webhook, {s.latency_rate:g}/s",
                    "aiohttp → produce → consume",
                    "WebhookGateway → first task",
                    lambda: hook.measure(s.latency_count, s.latency_rate),
                    lambda: _collect(
                        s.latency_count, hook.poster(f"{gateway.url}/bench"), s.latency_rate
                    ),
                    [Metric("p50_ms", "p50", "ms", Goal("<=", 2.0)), Metric("p99_ms", "p99", "ms")],
                )
            )
        finally:
            await hook.stop()
            await raw.stop()


async def _s3(ctx: BenchContext) -> None:
    s = ctx.sizes
    try:
        endpoint = ctx.moto_endpoint()
    except ServiceUnavailable as exc:
        ctx.add(skipped_rows(SCENARIO, "s3 notification via SQS", str(exc)))
        return
    for var, value in (
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        os.environ.setdefault(var, value)
    import boto3

    prefix = ctx.prefix("b")
    bucket = f"{prefix}-lake".lower()
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=bucket)
    wf = _recording_workflow(
        "bench_s3_trigger",
        S3Event(
            bucket=bucket, prefix="in/", endpoint_url=endpoint, region="us-east-1", wait_seconds=1
        ),
        lambda e: float(e.key.removeprefix("in/").removesuffix(".json")),
    )

    async def put(sent: float) -> None:
        await asyncio.to_thread(
            client.put_object, Bucket=bucket, Key=f"in/{sent:.6f}.json", Body=b"{}"
        )

    await _serve_and_compare(
        ctx,
        wf,
        prefix,
        _alone(
            f"s3 notification via SQS, {s.s3_rate:g}/s",
            "S3Event → first task",
            lambda: _collect(s.s3_count, put, s.s3_rate),
            "moto_server; SQS long poll wait_seconds=1; engine on Kafka",
        ),
    )


async def _schedule(ctx: BenchContext) -> None:
    ticks = ctx.sizes.schedule_ticks
    prefix = ctx.prefix("b")
    wf = _recording_workflow(
        "bench_schedule_trigger",
        Schedule(name=f"{prefix}-every-second", every="1s", catchup="skip"),
        lambda e: e.scheduled_time.timestamp(),
    )

    async def collect() -> Metrics:
        SINK.clear()
        return await _sunk(ticks, ticks + 30.0)

    await _serve_and_compare(
        ctx,
        wf,
        prefix,
        _alone(
            "schedule every 1s",
            "schedule tick → first task",
            collect,
            f"{ticks} ticks per iteration; engine on Kafka",
        ),
    )


async def run(ctx: BenchContext) -> None:
    """Kafka and webhook triggers, then S3, then a schedule."""
    await _kafka_and_webhook(ctx)
    await _s3(ctx)
    await _schedule(ctx)
