"""Workflows and helpers the matching tests share."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from deerflow import Engine, RunHandle, RunResult, Workflow
from deerflow.events import KafkaEvent
from deerflow.log.base import TopicPartition, partition_for


def invoices(
    name: str = "invoices", *, timeout: str | float | None = "60s", **options: Any
) -> Workflow:
    """request -> wait for InvoiceApproved of the run's invoice -> book (who approved, or None)."""
    wf = Workflow(name=name)

    @wf.task(id="request")
    def request(context):
        return context.params["invoice_id"]

    wf.wait_for_event(
        id="approval",
        event="InvoiceApproved",
        depends_on=["request"],
        match={"data.invoice_id": "params.invoice_id"},
        timeout=timeout,
        **options,
    )

    @wf.task(id="book", depends_on=["approval"])
    def book(context):
        event = context.tasks["approval"].output
        return None if event is None else event["data"]["by"]

    return wf


def payments(name: str, topic: str) -> Workflow:
    """One node, ``paid``: waits for the PaymentReceived of its order, from ``topic`` too."""
    wf = Workflow(name=name)
    wf.wait_for_event(
        id="paid",
        event="PaymentReceived",
        match={"data.order": "params.order"},
        source=KafkaEvent(topic=topic),
        timeout="1m",
    )
    return wf


async def until_waiting(
    engine: Engine,
    *handles: RunHandle,
    timeout: float = 60,
    node: str = "approval",
    why: Callable[[], str] = str,
) -> None:
    """Wait until each run's ``node`` is waiting for its event; failing, say what the first
    runs still pending are doing, and ``why()`` (e.g. the workers' logs)."""
    deadline = time.monotonic() + timeout
    pending = list(handles)
    while pending:
        states = await asyncio.gather(*(handle.status() for handle in pending))
        pending = [
            handle
            for handle, state in zip(pending, states, strict=True)
            if node not in state.tasks or state.tasks[node].status != "waiting"
        ]
        if pending:
            if time.monotonic() >= deadline:
                detail = await what_they_do(engine, pending)
                raise AssertionError(f"{len(pending)} runs never waited: {detail}{why()}")
            await asyncio.sleep(0.1)


async def what_they_do(engine: Engine, late: list[RunHandle]) -> str:
    """What the first of ``late`` runs are doing (status, tasks, history partition), and the
    offsets of the first one's records, read from the log itself rather than the run index."""
    shown = await asyncio.gather(*(handle.status() for handle in late[:5]))
    parts = await engine.log.partition_count(engine.topics.history)
    detail = "; ".join(
        f"{r.run_id} (partition {partition_for(r.run_id, parts)}): {r.status}, "
        + ", ".join(f"{t}={task.status}" for t, task in r.tasks.items())
        for r in shown
    )
    first = late[0].run_id
    tp = TopicPartition(engine.topics.history, partition_for(first, parts))
    read = await engine.log.read_partitions({tp: 0})
    found = [r.offset for r in read[tp] if first.encode() in r.value]
    return f"{detail}; {first}'s records in {tp}: offsets {found} of {len(read[tp])}"


async def results_within(
    engine: Engine, handles: list[RunHandle], timeout: float, why: Callable[[], str] = str
) -> list[RunResult]:
    """Each run's result, in order; failing, say how many ended, what the first of the others
    are doing, and ``why()`` (e.g. the workers' logs)."""
    waits = [asyncio.ensure_future(handle.result()) for handle in handles]
    try:
        _, pending = await asyncio.wait(waits, timeout=timeout)
        if pending:
            late = [h for h, w in zip(handles, waits, strict=True) if w in pending]
            detail = await what_they_do(engine, late)
            raise AssertionError(
                f"{len(late)} of {len(handles)} runs did not end within {timeout:g}s: "
                f"{detail}{why()}"
            )
        return [w.result() for w in waits]
    finally:
        for w in waits:
            w.cancel()
