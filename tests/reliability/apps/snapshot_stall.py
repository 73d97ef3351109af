"""A process whose orchestrator stalls in the middle of a snapshot write, to be SIGKILLed there.

``python -m tests.reliability.apps.snapshot_stall STORE MARKER RUNS [delta]`` starts ``RUNS``
runs of the 3-step app on ``STORE`` with a snapshot every 5 records (with ``delta``, every
snapshot after a partition's first is a delta). Once one snapshot of a
partition is committed, the next manifest of that partition (with ``delta``: the next one of
a delta, so a base and maybe deltas before it are committed) is never appended: the writer
waits there (its chunks are already in the log). Once every run's start has returned (so each run is
durably requested), it touches ``MARKER`` and the process stops itself (SIGSTOP), frozen with
that write cut short. The test kills the process then, so the kill lands between a snapshot's
chunks and its manifest, and every run it waits for was requested.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import orjson

from deerflow import Engine
from deerflow.eventstore import open_log
from deerflow.log.base import Message, TopicPartition
from tests.reliability.faults import FaultyLog


class StallingLog(FaultyLog):
    """Appends for real, except a second manifest of a partition: that one never returns."""

    def __init__(self, url: str, marker: Path, *, delta: bool = False) -> None:
        super().__init__(open_log(url))
        self.marker = marker
        self.delta = delta
        self.manifests: set[int] = set()
        #: set once every run is started: the stall waits for it, so no start is cut short
        self.started = asyncio.Event()

    async def append(self, messages: Sequence[Message]) -> list[tuple[TopicPartition, int]]:
        for m in messages:
            if dict(m.headers).get("deerflow-snapshot") == b"manifest":
                assert m.partition is not None
                is_delta = "chain" in orjson.loads(m.value)
                if m.partition in self.manifests and (is_delta or not self.delta):
                    # A snapshot can be due before the last start returns (starts are slow on
                    # a busy machine): a kill then would leave runs the test waits for unrequested.
                    await self.started.wait()
                    self.marker.touch()
                    # Frozen here, nothing goes on until the kill: runs stay unfinished.
                    os.kill(os.getpid(), signal.SIGSTOP)
                    await asyncio.Event().wait()  # stalled for good: the kill comes here
                self.manifests.add(m.partition)
        return await super().append(messages)


def monkeypatch_deltas() -> None:
    """Make a chain go on with deltas up to its length bound, however much changed."""
    from deerflow.runtime import _snapshots

    def wants_base(chain: _snapshots.Chain, changed: int, held: int) -> bool:
        return len(chain.manifests) > _snapshots.MAX_DELTAS

    _snapshots.Chain.wants_base = wants_base  # type: ignore[method-assign,assignment]


async def main(url: str, marker: Path, runs: int, delta: bool) -> None:
    from tests.reliability.apps.steps_app import workflow  # reads $SINK_DB

    if delta:
        # Every snapshot after a partition's first is a delta. Otherwise one is a base when
        # most of the partition's runs changed since the last, which 30 short runs running at
        # once mostly do: the delta this mode stalls in might never come before they end.
        monkeypatch_deltas()
    log = StallingLog(url, marker, delta=delta)
    async with Engine(log, [workflow], snapshot_every=5) as engine:
        for n in range(runs):
            await engine.start(workflow, params={"n": n}, run_id=f"stall-{n:03d}")
        log.started.set()
        await asyncio.Event().wait()  # runs go on until the kill


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4:] == ["delta"]))
