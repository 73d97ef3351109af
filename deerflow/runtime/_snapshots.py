"""Snapshots of history partitions: what a new owner loads instead of folding from offset 0.

A snapshot of history partition ``p`` holds what its owner keeps of it: the state of each run
that has not ended, the tombstones of ended runs still kept for dedupe, the reasons runs are
parked, and the offset it covers (every record below it is folded in). Everything it reflects
was durable in the log when it was taken (the owner drains its outbox first), so a new owner
that loads it and folds the partition from the covered offset on holds what a fold from
offset 0 gives (the fold ignores repeats, by their content or by the window of recent ids each
run state keeps, and the tombstones ignore ended runs').

Where it lives: partition ``p`` of the topic ``<history>.snapshots``, as chunk records (at
most :data:`CHUNK_BYTES` each, well under Kafka's default 1 MB message limit) followed by a
manifest record naming the chunks' offsets, the body's size and sha256, the format version,
the history topic and partition, the covered offset and the run state's schema fingerprint.
Once the manifest is durable its offset + 1 is committed for partition ``p`` in the
bookkeeping group ``<orchestrator group>.snapshots``: a new owner asks that group where the
newest manifest is, and never scans the topic (Tansu does not compact, and its end offsets
are unreliable). A crash before that commit leaves the previous snapshot the newest.

On Kafka the topic is created compacted, with record keys ``<p>/<slot>/<chunk>`` and
``<p>/<slot>/manifest``: consecutive snapshots of a partition alternate between two slots, so
compaction never removes a chunk of the newest complete snapshot while the next is written.

Anything wrong (no commit, a missing chunk, a checksum, version, partition or fingerprint
that does not match, a covered offset beyond the history's end) makes :meth:`Snapshots.load`
say so and return None: the owner then folds the partition from offset 0. Never wrong state.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any

import orjson

from deerflow.core.state import RunState, shared
from deerflow.core.topics import Topics
from deerflow.log.base import EventLog, Message, Record, TopicPartition
from deerflow.payloads import stored_in
from deerflow.runtime._snapcodec import CodecError, encode, from_json, schema_fingerprint

log = logging.getLogger("deerflow.orchestrator")

FORMAT = 1
CHUNK_BYTES = 512 * 1024
_KIND = "deerflow-snapshot"


@dataclass
class PartitionImage:
    """What a snapshot of one history partition holds.

    Attributes:
        covered: the offset of the first history record not folded in.
        runs: states of the runs that have not ended.
        ended: tombstones kept: (run id, retry number that reopens it or 0, end time).
        parked: reasons runs are parked, by run id.
        stamp: the timestamp of the history record at ``covered - 1`` (None: not known), so a
            history recreated since the snapshot does not pass for the one it covers.
    """

    covered: int
    runs: list[RunState] = field(default_factory=list)
    ended: list[tuple[str, int, float]] = field(default_factory=list)
    parked: dict[str, str] = field(default_factory=dict)
    stamp: int | None = None


class SnapshotInvalid(Exception):
    """A snapshot that must not be used (the reason is the message)."""


class Snapshots:
    """Writes and loads partition snapshots through an :class:`EventLog`.

    Args:
        log: the event log.
        topics: the deployment's topics (history, snapshots and the snapshots' group).
        chunk_bytes: the largest chunk record.
    """

    def __init__(self, log_: EventLog, topics: Topics, *, chunk_bytes: int = CHUNK_BYTES) -> None:
        self._log = log_
        # Chunks are written to the log itself, never by reference: each fits a record, and
        # a blob per snapshot would outlive the compacted record that named it. They are read
        # through ``log_``, which resolves the references older versions wrote.
        self._writer = stored_in(log_)
        self.history = topics.history
        self.topic = topics.snapshots
        self.group = topics.snapshot_group
        self._chunk = chunk_bytes
        self._slots: dict[int, int] = {}  # the slot of each partition's newest snapshot
        self._ready = False

    async def _ensure(self, partitions: int) -> None:
        if not self._ready:
            await self._log.ensure_topic(self.topic, partitions, keep_forever=True, compact=True)
            self._ready = True

    # -- writing --------------------------------------------------------------------------------

    def encode(self, partition: int, image: PartitionImage) -> bytes:
        """The body of a snapshot of ``partition`` (raises :class:`CodecError` if a value is
        not JSON-able)."""
        body = {
            "format": FORMAT,
            "topic": self.history,
            "partition": partition,
            "covered": image.covered,
            "fingerprint": schema_fingerprint(RunState),
            "runs": image.runs,
            "ended": image.ended,
            "parked": image.parked,
            "stamp": image.stamp,
        }
        return encode(body)

    async def write(self, partition: int, partitions: int, covered: int, body: bytes) -> int:
        """Append ``body`` (from :meth:`encode`) as the newest snapshot of ``partition``, then
        commit its manifest's position. Returns the manifest's offset."""
        await self._ensure(partitions)
        slot = 1 - self._slots.get(partition, 1)
        chunks = [body[i : i + self._chunk] for i in range(0, len(body), self._chunk)] or [b""]
        placed = await self._writer.append(
            [
                Message(
                    self.topic,
                    chunk,
                    key=f"{partition}/{slot}/{n}",
                    partition=partition,
                    headers=((_KIND, b"chunk"),),
                )
                for n, chunk in enumerate(chunks)
            ]
        )
        manifest = {
            "format": FORMAT,
            "topic": self.history,
            "partition": partition,
            "covered": covered,
            "fingerprint": schema_fingerprint(RunState),
            "chunks": [offset for _, offset in placed],
            "size": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
            "slot": slot,
        }
        [(tp, offset)] = await self._writer.append(
            [
                Message(
                    self.topic,
                    orjson.dumps(manifest),
                    key=f"{partition}/{slot}/manifest",
                    partition=partition,
                    headers=((_KIND, b"manifest"),),
                )
            ]
        )
        await self._log.commit_group(self.group, {tp: offset + 1})
        self._slots[partition] = slot
        return offset

    # -- loading --------------------------------------------------------------------------------

    async def load(self, partitions: list[int], count: int) -> dict[int, PartitionImage]:
        """The newest valid snapshot of each of ``partitions`` that has one.

        A snapshot that cannot be used is logged as a warning and left out (its partition is
        then folded from offset 0). ``count`` is the history's partition count.
        """
        await self._ensure(count)
        tps = [TopicPartition(self.topic, p) for p in partitions]
        committed = await self._log.group_offsets(self.group, tps)
        manifests = {tp: offset - 1 for tp, offset in committed.items() if offset}
        if not manifests:
            return {}
        first = await self._log.read_partitions(manifests)
        starts: dict[TopicPartition, int] = {}
        found: dict[TopicPartition, dict[str, Any]] = {}
        for tp, at in manifests.items():
            try:
                manifest = _manifest(first[tp], at, self.history, tp.partition)
            except SnapshotInvalid as exc:
                snapshot_invalid(tp.partition, exc)
                continue
            found[tp] = manifest
            starts[tp] = min(manifest["chunks"], default=at)
        chunks = await self._log.read_partitions(starts) if starts else {}
        images: dict[int, PartitionImage] = {}
        for tp, manifest in found.items():
            try:
                # In a thread: decoding many live runs takes a while, and the loop goes on.
                images[tp.partition] = await asyncio.to_thread(
                    self._image, manifest, chunks[tp], tp.partition
                )
            except (SnapshotInvalid, CodecError) as exc:
                snapshot_invalid(tp.partition, exc)
        return images

    def _image(
        self, manifest: dict[str, Any], records: list[Record], partition: int
    ) -> PartitionImage:
        by_offset = {r.offset: r for r in records}
        parts = []
        for offset in manifest["chunks"]:
            record = by_offset.get(offset)
            if record is None or dict(record.headers).get(_KIND) != b"chunk":
                raise SnapshotInvalid(f"chunk at offset {offset} is missing")
            parts.append(record.value)
        body = b"".join(parts)
        if len(body) != manifest["size"] or hashlib.sha256(body).hexdigest() != manifest["sha256"]:
            raise SnapshotInvalid("its checksum does not match")
        image = decode_body(body, partition)
        if image.covered != manifest["covered"]:
            raise SnapshotInvalid("its body does not match its manifest")
        self._slots[partition] = int(manifest.get("slot", self._slots.get(partition, 1)))
        return image


def decode_body(body: bytes, partition: int) -> PartitionImage:
    """The image :meth:`Snapshots.encode` made ``body`` of, for ``partition``; raises
    :class:`SnapshotInvalid` if it is not one (another format, partition or schema)."""
    try:
        data = orjson.loads(body)
        found = (data["format"], data["partition"], data["fingerprint"])
        expected = (FORMAT, partition, schema_fingerprint(RunState))
        if found != expected:
            raise SnapshotInvalid(f"its body is of {found}, not {expected}")
        return PartitionImage(
            covered=int(data["covered"]),
            runs=[shared(from_json(state, RunState)) for state in data["runs"]],
            ended=[(str(r), int(n), float(t)) for r, n, t in data["ended"]],
            parked={str(k): str(v) for k, v in data["parked"].items()},
            stamp=None if data.get("stamp") is None else int(data["stamp"]),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise SnapshotInvalid(f"its body does not decode: {exc!r}") from exc


def _manifest(records: list[Record], at: int, history: str, partition: int) -> dict[str, Any]:
    """The manifest at offset ``at`` among ``records``, checked against what is expected."""
    record = next((r for r in records if r.offset == at), None)
    if record is None or dict(record.headers).get(_KIND) != b"manifest":
        raise SnapshotInvalid(f"no manifest at offset {at}")
    try:
        manifest = orjson.loads(record.value)
        checks = {
            "format": FORMAT,
            "topic": history,
            "partition": partition,
            "fingerprint": schema_fingerprint(RunState),
        }
        for name, expected in checks.items():
            if manifest[name] != expected:
                raise SnapshotInvalid(f"its {name} is {manifest[name]!r}, not {expected!r}")
        if not isinstance(manifest["covered"], int) or not isinstance(manifest["chunks"], list):
            raise SnapshotInvalid("its manifest is malformed")
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise SnapshotInvalid(f"its manifest does not decode: {exc!r}") from exc
    return dict(manifest)


def snapshot_invalid(partition: int, reason: object) -> None:
    """Say that the snapshot of ``partition`` is not used, and why."""
    log.warning(
        "orchestrator: the snapshot of history partition %d cannot be used (%s); folding the "
        "partition from its first offset instead",
        partition,
        reason,
    )
