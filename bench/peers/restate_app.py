"""The Restate service of scenario f, served by Hypercorn in a process of its own.

``python -m bench.peers.restate_app HOST:PORT`` serves the ASGI app of the Restate Python SDK
(``restate-sdk``) over cleartext HTTP/2, which is how ``restate-server`` talks to a deployment
it was told about (``POST /deployments`` on its admin API). Its service ``DeerflowBench`` has
one handler per workload, each a single invocation through the server's ingress:

* ``chain(steps)``: ``steps`` no-op durable steps (``ctx.run_typed``) one after the other;
  the driver starts several such invocations at once;
* ``fanout(n)``: ``n`` no-op durable steps started at once and gathered (``restate.gather``);
* ``iomap({"n", "concurrency", "delay"})``: ``n`` durable steps that each sleep ``delay`` s,
  at most ``concurrency`` in flight (a sliding window over ``restate.wait_completed``).

``ctx.run`` steps are the lightest durable form Restate offers, as DBOS's steps are for DBOS:
each result is journaled by the server (its log and RocksDB) before the handler goes on, but a
step is no invocation of its own. The heavier alternative, one service call per item, would
give every item its own invocation, journal and HTTP/2 stream.

The fan-out waits with ``restate.gather``, the combinator Restate documents for "all of
these", over batches of ``GATHER_BATCH`` futures: in restate-sdk 1.3 its cost grows with the
square of the futures it waits for (one invocation gathers 100 steps in about 20 ms but 1,000
in about 750 ms, and this process, not the server, is then the busy one). Gathering in batches
is how a Restate user would work around that, so the comparison is with Restate at its best.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import restate
from hypercorn.asyncio import serve
from hypercorn.config import Config
from restate.server import install_shutdown_hook

GATHER_BATCH = 100  # restate.gather is quadratic in its futures (module docstring)

service = restate.Service("DeerflowBench")


async def noop(index: int) -> int:
    """A step that does nothing (async, so the SDK does not hop to a thread for it)."""
    return index


async def sleep_step(delay: float) -> float:
    """A step standing for a remote call."""
    await asyncio.sleep(delay)
    return delay


@service.handler()
async def chain(ctx: restate.Context, steps: int) -> int:
    """``steps`` no-op steps in sequence."""
    for index in range(steps):
        await ctx.run_typed(f"s{index}", noop, restate.RunOptions(), index)
    return steps


@service.handler()
async def fanout(ctx: restate.Context, n: int) -> int:
    """``n`` no-op steps at once, gathered ``GATHER_BATCH`` at a time (see the docstring)."""
    steps = [ctx.run_typed(f"w{i}", noop, restate.RunOptions(), i) for i in range(n)]
    gathered = 0
    for first in range(0, n, GATHER_BATCH):
        gathered += len(await restate.gather(*steps[first : first + GATHER_BATCH]))
    return gathered


@service.handler()
async def iomap(ctx: restate.Context, spec: dict[str, Any]) -> int:
    """``spec["n"]`` sleeping steps, ``spec["concurrency"]`` at a time."""
    total, limit, delay = int(spec["n"]), int(spec["concurrency"]), float(spec["delay"])
    started = done = 0
    running: list[restate.RestateDurableFuture[Any]] = []
    while done < total:
        while started < total and len(running) < limit:
            running.append(ctx.run_typed(f"m{started}", sleep_step, restate.RunOptions(), delay))
            started += 1
        # A window rather than waves of `limit`: a new step starts as soon as one finishes, as
        # under a semaphore (the DBOS peer) or a worker pool (Celery, deerflow).
        finished, running = await restate.wait_completed(*running)
        for future in finished:
            await future  # takes the result out of the journal
        done += len(finished)
    return done


app = restate.app(services=[service])


async def _serve(config: Config) -> None:
    # The SDK's ASGI app takes over SIGTERM on its first request (asyncio keeps one handler per
    # signal), which leaves Hypercorn's own handler dead: stop through the SDK's hook instead.
    stop = asyncio.Event()
    install_shutdown_hook(asyncio.get_running_loop(), stop.set)
    await serve(app, config, shutdown_trigger=stop.wait)


def main() -> None:
    """Serve ``app`` on the ``HOST:PORT`` given until SIGTERM."""
    config = Config()
    config.bind = [sys.argv[1]]
    config.graceful_timeout = 2.0
    config.accesslog = None
    config.errorlog = "-"
    config.loglevel = "WARNING"
    asyncio.run(_serve(config))


if __name__ == "__main__":
    main()
