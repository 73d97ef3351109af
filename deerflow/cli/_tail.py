"""``deerflow events tail``: the last records of a topic, then (``-f``) new ones as they come."""

from __future__ import annotations

import asyncio
import sys
from collections import deque
from typing import Any

from rich.console import Console
from rich.text import Text

from deerflow import _codec
from deerflow.cli._live import when
from deerflow.eventstore.base import EventLog, Record, TopicPartition


def record_json(record: Record) -> dict[str, Any]:
    """A record as JSON: its position, key, headers and the value (decoded when it is JSON)."""
    try:
        value: Any = _codec.loads(record.value)
    except ValueError:
        value = record.value.decode("utf-8", "replace")
    return {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "key": record.key,
        "timestamp_ms": record.timestamp_ms,
        "headers": {k: v.decode("utf-8", "replace") for k, v in record.headers},
        "value": value,
    }


def _line(record: Record) -> Text:
    value = record_json(record)["value"]
    kind = summary = ""
    if isinstance(value, dict):
        kind = str(value.get("type") or value.get("reason") or "")
        parts = [
            value.get("task_id"),
            value.get("attempt"),
            value.get("error"),
            value.get("workflow"),
        ]
        summary = " ".join(str(p) for p in parts if p not in (None, ""))
    else:
        summary = str(value)[:200]
    return Text.assemble(
        (when(record.timestamp_ms / 1000), "dim"),
        " ",
        (f"{record.topic}[{record.partition}]@{record.offset}", "cyan"),
        " ",
        (record.key or "-", "bold"),
        " ",
        (kind, "green"),
        " ",
        summary,
    )


def _show(record: Record, as_json: bool, console: Console) -> None:
    if as_json:
        sys.stdout.write(_codec.dumps(record_json(record)).decode() + "\n")
        sys.stdout.flush()
    else:
        console.print(_line(record), highlight=False, soft_wrap=True)


async def tail_topic(
    log: EventLog,
    topic: str,
    *,
    key: str | None,
    lines: int,
    follow: bool,
    as_json: bool,
    console: Console,
) -> None:
    """Print the last ``lines`` records of ``topic`` (with key ``key``), oldest first.

    Reads the topic from its start to find them (a log has no "last N" query), then follows
    from the end when ``follow``.
    """
    count = await log.partition_count(topic)
    start = {TopicPartition(topic, p): 0 for p in range(count)}
    by_tp = await log.read_partitions(start)
    last: deque[Record] = deque(maxlen=max(0, lines))
    for record in sorted(
        (r for rs in by_tp.values() for r in rs),
        key=lambda r: (r.timestamp_ms, r.partition, r.offset),
    ):
        if key is None or record.key == key:
            last.append(record)
    for record in last:
        _show(record, as_json, console)
    if not follow:
        return
    ends = {tp: (records[-1].offset + 1 if records else 0) for tp, records in by_tp.items()}
    async with log.reader(ends) as reader:
        while True:
            for record in await reader.poll(timeout=0.5, max_records=500):
                if key is None or record.key == key:
                    _show(record, as_json, console)
            await asyncio.sleep(0)
