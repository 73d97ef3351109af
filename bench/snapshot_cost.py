"""What a history partition's snapshot costs its owner: a whole one, a base, a delta.

``python -m bench.snapshot_cost [RUNS] [CHANGED]`` (defaults 25,000 and 1,000) folds ``RUNS``
runs of scenario g's workflow (one ``wait_for_event`` node, then a task) into the owner of
one history partition, as their request and their wait's start leave them (the states are
folded here, not run by an engine), and prints one JSON line:

- ``whole_ms``, ``whole_sha_ms``: encoding every live run in one call, as every snapshot did
  before snapshots were incremental (all of it on the event loop), and hashing that body;
- ``base_ms``, ``base_loop_ms``, ``base_slice_ms``: taking a base now: the time it took, the
  time of it spent on the loop, and the longest the loop waited at once;
- ``delta_*``: the same for the delta after ``CHANGED`` runs changed (as a partition's
  ``snapshot_every`` = 5,000 records resume and end about 1,000 runs in g);
- ``base_bytes``, ``delta_bytes``: the bodies' sizes; ``*_write_ms``: writing each (the body
  spliced, cut and hashed in a thread, appended to an in-memory log: the broker's part is not
  in it).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import sys
import time

from bench.scenarios.eventwaits import waits_workflow
from deerflow.core import history as h
from deerflow.core.decide import advance
from deerflow.core.state import fold
from deerflow.core.topics import Topics
from deerflow.log.memory import MemoryEventLog
from deerflow.runtime._outbox import Outbox
from deerflow.runtime._ownership import Ownership
from deerflow.runtime._snapshots import PartitionImage, Snapshots

TAKEN = re.compile(r"\((a \w+), (\d+) runs\) in ([\d.]+) ms, ([\d.]+) ms .* ([\d.]+) ms at most")


class _Owner:
    """The orchestrator's part, which taking a snapshot does not use."""

    def fold_record(self, value: bytes, touched: dict[str, object]) -> None: ...
    def forgotten(self, run_ids: set[str]) -> None: ...
    def resume(self, live: list[object]) -> int:
        return 0

    def advance(self, runs: object) -> None: ...


class _Taken(logging.Handler):
    """Keeps what the owner logs of each snapshot it takes."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.found: list[tuple[str, ...]] = []

    def emit(self, record: logging.LogRecord) -> None:
        found = TAKEN.search(record.getMessage())
        if found:
            self.found.append(found.groups())


async def measure(runs: int, changed: int) -> dict[str, float]:
    """The costs for ``runs`` waiting runs, ``changed`` of them changed for the delta."""
    log = MemoryEventLog()
    topics = Topics("bench")
    await log.ensure_topic(topics.history, 1)
    snapshots = Snapshots(log, topics)
    outbox = Outbox(log, lambda appended: None, lambda message: None)
    owned = Ownership(
        log,
        topics.history,
        _Owner(),
        outbox,
        asyncio.Event(),
        snapshots=snapshots,  # type: ignore[arg-type]
    )
    owned.partitions = 1
    wf = waits_workflow()
    now = time.time()
    for n in range(runs):
        run_id = f"bench_waits-{n:08d}"
        state = owned.add(run_id)
        request = h.RunRequested(
            id=h.event_id(run_id, "requested"),
            run_id=run_id,
            ts=now,
            workflow=wf.name,
            version=wf.version,
            params={"key": f"k{n}"},
        )
        fold(state, request)
        advance(wf, state, now)
    owned._covered[0], owned._stamps[0] = 5 * runs, None
    live = [owned.runs[r] for r in sorted(owned.runs)]

    began = time.perf_counter()
    whole = snapshots.encode(0, PartitionImage(5 * runs, live))
    whole_ms = 1000 * (time.perf_counter() - began)
    began = time.perf_counter()
    hashlib.sha256(whole).hexdigest()
    whole_sha_ms = 1000 * (time.perf_counter() - began)

    taken = _Taken()
    logger = logging.getLogger("deerflow.orchestrator")
    logger.addHandler(taken)
    logger.setLevel(logging.DEBUG)
    sizes: list[int] = []
    writes: list[float] = []
    for changes in (None, changed):
        if changes is not None:
            for n in range(0, runs, max(1, runs // changes)):
                owned.changed(f"bench_waits-{n:08d}")
        result = await owned._take(0)
        assert result is not None
        covered, image, encoded, delta, _ = result
        began = time.perf_counter()
        body = await asyncio.to_thread(snapshots.body, 0, image, encoded, delta=delta)
        sizes.append(len(body))
        await snapshots.write(0, 1, covered, body, delta=delta)
        writes.append(round(1000 * (time.perf_counter() - began), 1))
    logger.removeHandler(taken)
    (base_kind, _, base, base_loop, base_slice), (delta_kind, _, dl, dl_loop, dl_slice) = (
        taken.found
    )
    assert (base_kind, delta_kind) == ("a base", "a delta"), taken.found
    return {
        "runs": runs,
        "changed": changed,
        "whole_ms": round(whole_ms, 1),
        "whole_sha_ms": round(whole_sha_ms, 1),
        "whole_bytes": len(whole),
        "base_ms": float(base),
        "base_loop_ms": float(base_loop),
        "base_slice_ms": float(base_slice),
        "base_bytes": sizes[0],
        "base_write_ms": writes[0],
        "delta_ms": float(dl),
        "delta_loop_ms": float(dl_loop),
        "delta_slice_ms": float(dl_slice),
        "delta_bytes": sizes[1],
        "delta_write_ms": writes[1],
    }


def main(argv: list[str]) -> None:
    """Print the costs as one JSON line."""
    runs = int(argv[0]) if argv else 25_000
    changed = int(argv[1]) if len(argv) > 1 else 1_000
    print(json.dumps(asyncio.run(measure(runs, changed))))


if __name__ == "__main__":
    main(sys.argv[1:])
