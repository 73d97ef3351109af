"""The router's note of open waits: which waits each run has, to retire them when it ends.

The note lives in the router's memory (bounded: the oldest runs are dropped first, their waits
then leave the index by deadline, match or its bound). After a restart, or when another
process takes over history partitions, it is rebuilt (:func:`rebuilt_notes`) from the
matching topic itself, over the span the index rebuilds from (:mod:`._rebuild`): every live
wait's newest registration lies in it, and the ``end`` records after it say which ended.
"""

from __future__ import annotations

from collections.abc import Iterator

import deerflow._codec as _codec
from deerflow.log.base import EventLog, TopicPartition, partition_for
from deerflow.matching._rebuild import rebuild_group

#: runs the router remembers open waits of, to retire them when the run ends
RETIRE_LIMIT = 200_000

_Waits = tuple[str, str] | list[tuple[str, str]]  # one (wait id, key), or several


def _listed(waits: _Waits | None) -> list[tuple[str, str]]:
    if waits is None:
        return []
    return [waits] if isinstance(waits, tuple) else list(waits)


class OpenWaits:
    """Run id -> (wait id, key) of its open waits, oldest run first, bounded.

    A run's one open wait (the usual case) is kept as its (wait id, key) pair itself, a list
    only for a run with several: 71 bytes a waiting run instead of 165 (the dict entry and the
    pair, without the list).
    """

    def __init__(self, limit: int = RETIRE_LIMIT) -> None:
        self._runs: dict[str, _Waits] = {}
        self._limit = limit

    def __len__(self) -> int:
        return len(self._runs)

    def __bool__(self) -> bool:
        return bool(self._runs)

    def waits(self, run_id: str) -> list[tuple[str, str]]:
        """The (wait id, key) of ``run_id``'s open waits."""
        return _listed(self._runs.get(run_id))

    def remember(self, run_id: str, wait_id: str, key: str) -> None:
        """``run_id`` waits on ``wait_id`` under ``key`` (noted once, however often told)."""
        wait = (wait_id, key)
        waits = self._runs.get(run_id)
        if waits is None:
            self._runs[run_id] = wait
        elif isinstance(waits, tuple):
            if waits != wait:
                self._runs[run_id] = [waits, wait]
        elif wait not in waits:
            waits.append(wait)
        while len(self._runs) > self._limit:
            del self._runs[next(iter(self._runs))]

    def retire(self, run_id: str, wait_id: str | None) -> list[tuple[str, str]]:
        """Forget ``wait_id`` of ``run_id`` (``None``: all of them); the (id, key) forgotten."""
        waits = _listed(self._runs.get(run_id))
        if not waits:
            return []
        ended = [w for w in waits if wait_id is None or w[0] == wait_id]
        kept = [w for w in waits if w not in ended]
        if len(kept) > 1:
            self._runs[run_id] = kept
        elif kept:
            self._runs[run_id] = kept[0]
        else:
            del self._runs[run_id]
        return ended

    def forget_partitions(self, partitions: set[int], count: int) -> None:
        """Drop the runs whose history is in ``partitions`` (of ``count``): another process
        routes them now."""
        for run_id in [r for r in self._runs if partition_for(r, count) in partitions]:
            del self._runs[run_id]


async def rebuilt_notes(
    log: EventLog, topic: str, partitions: set[int], count: int
) -> Iterator[tuple[str, str, str]]:
    """(run id, wait id, key) of each wait still open in the matching ``topic`` of a run whose
    history is in ``partitions`` (of ``count``), read from where the index's rebuilds start.

    Records are read one partition after another, so what is held at once is one partition's
    span and the open waits found.
    """
    tps = [TopicPartition(topic, p) for p in range(await log.partition_count(topic))]
    starts = await log.group_offsets(rebuild_group(topic), tps)
    found: dict[str, tuple[str, str]] = {}
    for tp in tps:
        for record in await log.read_partition(tp, starts.get(tp) or 0):
            try:
                body = _codec.loads(record.value)
                kind, ident = body["k"], body["id"]
            except (ValueError, KeyError, TypeError):
                continue
            if kind == "wait":
                run_id = body.get("run")
                if isinstance(run_id, str) and partition_for(run_id, count) in partitions:
                    found[ident] = (run_id, record.key or "")
            elif kind == "end":
                found.pop(ident, None)
    return ((run_id, ident, key) for ident, (run_id, key) in found.items())
