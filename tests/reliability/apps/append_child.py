"""Appends to an SQLite event log as fast as it can, writing every acknowledged append.

Usage: ``python append_child.py sqlite:///file.db TAG``. Several writers append batches of 1-5
records concurrently (so appends are group-committed); after each append returns, one line
``value partition offset`` per record is written to stdout and flushed, so a parent that
SIGKILLs this process knows exactly what was acknowledged.
"""

from __future__ import annotations

import asyncio
import random
import sys

from deerflow.eventstore import open_log
from deerflow.eventstore.base import Message

TOPIC = "crash"
WRITERS = 8


async def writer(log, tag: str, number: int) -> None:
    rng = random.Random(f"{tag}-{number}")
    sent = 0
    while True:
        values = [f"{tag}-{number}-{sent + j}" for j in range(rng.randint(1, 5))]
        placed = await log.append([Message(topic=TOPIC, key=v, value=v.encode()) for v in values])
        sys.stdout.write(
            "".join(
                f"{v} {tp.partition} {offset}\n"
                for v, (tp, offset) in zip(values, placed, strict=True)
            )
        )
        sys.stdout.flush()
        sent += len(values)


async def main(url: str, tag: str) -> None:
    log = open_log(url)
    await log.start()
    await log.ensure_topic(TOPIC, 4)
    await asyncio.gather(*(writer(log, tag, n) for n in range(WRITERS)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
