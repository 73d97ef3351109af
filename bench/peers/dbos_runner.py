"""DBOS in a subprocess of its own (it is a per-process singleton), driven over stdin/stdout.

``python -m bench.peers.dbos_runner SQLITE_PATH`` reads one command per line and answers one
JSON line with the seconds the workload took:

* ``chain M STEPS``: M workflows of STEPS sequential no-op steps, started at once;
* ``fanout N``: one workflow running N no-op steps concurrently (``asyncio.gather``);
* ``iomap N C DELAY``: one workflow running N steps that each sleep DELAY s, C at a time.

DBOS keeps its system database in that SQLite file with SQLite's defaults (rollback journal,
``synchronous=FULL``).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from dbos import DBOS


@DBOS.step()
async def noop(index: int) -> int:
    """A step that does nothing."""
    return index


@DBOS.step()
async def sleep_step(delay: float) -> float:
    """A step standing for a remote call."""
    await asyncio.sleep(delay)
    return delay


@DBOS.workflow()
async def chain(steps: int) -> int:
    """STEPS no-op steps in sequence."""
    for index in range(steps):
        await noop(index)
    return steps


@DBOS.workflow()
async def fanout(n: int) -> int:
    """N no-op steps at once."""
    return len(await asyncio.gather(*(noop(i) for i in range(n))))


@DBOS.workflow()
async def iomap(n: int, concurrency: int, delay: float) -> int:
    """N sleeping steps, ``concurrency`` at a time."""
    gate = asyncio.Semaphore(concurrency)

    async def one() -> float:
        async with gate:
            return await sleep_step(delay)

    return len(await asyncio.gather(*(one() for _ in range(n))))


async def _run(words: list[str]) -> None:
    if words[0] == "chain":
        handles = await asyncio.gather(
            *(DBOS.start_workflow_async(chain, int(words[2])) for _ in range(int(words[1])))
        )
        await asyncio.gather(*(h.get_result() for h in handles))
    elif words[0] == "fanout":
        await (await DBOS.start_workflow_async(fanout, int(words[1]))).get_result()
    elif words[0] == "iomap":
        await (
            await DBOS.start_workflow_async(iomap, int(words[1]), int(words[2]), float(words[3]))
        ).get_result()
    else:
        raise ValueError(f"unknown command {words!r}")


async def _serve() -> None:
    while line := await asyncio.to_thread(sys.stdin.readline):
        started = time.perf_counter()
        await _run(line.split())
        print(json.dumps({"seconds": time.perf_counter() - started}), flush=True)


def main() -> None:
    """Launch DBOS on the given SQLite file and serve commands until stdin closes."""
    DBOS(
        config={
            "name": "deerflow-bench",
            "system_database_url": f"sqlite:///{sys.argv[1]}",
            "log_level": "WARNING",
        }
    )
    DBOS.launch()
    print(json.dumps({"ready": True}), flush=True)
    try:
        asyncio.run(_serve())
    finally:
        DBOS.destroy()


if __name__ == "__main__":
    main()
