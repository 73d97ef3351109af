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

Incremental: a snapshot is a *base* (every live run of the partition) or a *delta* (the runs
changed since the previous snapshot, the tombstones of those that ended, the ids of those
gone). A delta's manifest names the manifests of its chain (the base, then the deltas before
it); a loader applies them in order. A chain is bounded (:data:`MAX_DELTAS` deltas, or deltas
adding up to :data:`DELTA_FRACTION` of the base's bytes): then the next snapshot is a base. So
writing one costs the runs that changed, and loading one at most a base and a half.

On Kafka the topic is created compacted, with record keys ``<p>/<slot>/<chunk>`` and
``<p>/<slot>/manifest`` for a base, ``<p>/<slot>/d<k>/<chunk>`` and ``<p>/<slot>/d<k>/manifest``
for the ``k``-th delta on it: consecutive bases of a partition alternate between two slots and
a base's deltas share its slot, so compaction never removes a record of the newest complete
chain while the next is written.

Anything wrong with the base or the newest manifest (no commit, a missing chunk or manifest, a
checksum, version, partition or fingerprint that does not match, a covered offset beyond the
history's end) makes :meth:`Snapshots.load` say so and leave the partition out: the owner then
folds it from offset 0. A bad delta further on leaves the chain's good prefix (the base and
the deltas before it, each verified) in use: the owner folds from the offset it covers.
Never wrong state.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from deerflow.core.state import RunState, shared
from deerflow.core.topics import Topics
from deerflow.log.base import EventLog, Message, Record, TopicPartition
from deerflow.payloads import stored_in
from deerflow.runtime._snapcodec import CodecError, encode, from_json, schema_fingerprint

log = logging.getLogger("deerflow.orchestrator")

FORMAT = 1  # a base snapshot: the whole partition
DELTA_FORMAT = 2  # a delta: what changed since the snapshot before it in its chain
CHUNK_BYTES = 512 * 1024
MAX_DELTAS = 16  # deltas on one base at most; then the next snapshot is a base
DELTA_FRACTION = 0.5  # a chain's deltas add up to at most this share of its base's bytes
_KIND = "deerflow-snapshot"

Tombstone = tuple[str, int, float]  # (run id, retry number that reopens it or 0, end time)


@dataclass
class PartitionImage:
    """What a snapshot of one history partition holds (a base), or what changed (a delta).

    Attributes:
        covered: the offset of the first history record not folded in.
        runs: states of the runs that have not ended (a delta: those that changed).
        ended: tombstones kept: (run id, retry number that reopens it or 0, end time); a
            delta: those of the changed runs that have ended.
        parked: reasons runs are parked, by run id (a delta: of the changed runs).
        stamp: the timestamp of the history record at ``covered - 1`` (None: not known), so a
            history recreated since the snapshot does not pass for the one it covers.
        gone: a delta only: changed runs that are neither running nor tombstoned any more.
    """

    covered: int
    runs: list[RunState] = field(default_factory=list)
    ended: list[Tombstone] = field(default_factory=list)
    parked: dict[str, str] = field(default_factory=dict)
    stamp: int | None = None
    gone: list[str] = field(default_factory=list)


def apply(image: PartitionImage, delta: PartitionImage) -> PartitionImage:
    """``image`` with ``delta`` applied: what a base written at the delta's point would hold.

    A changed run replaces what ``image`` held of it (state, tombstone, parking); tombstones
    keep their order (ended again: at the end). The owner that installs the result keeps at
    most its limit of them, the oldest going first.
    """
    changed = {s.run_id for s in delta.runs} | {t[0] for t in delta.ended} | set(delta.gone)
    runs = [s for s in image.runs if s.run_id not in changed] + delta.runs
    ended = [t for t in image.ended if t[0] not in changed] + delta.ended
    parked = {r: why for r, why in image.parked.items() if r not in changed} | delta.parked
    return PartitionImage(delta.covered, runs, ended, parked, delta.stamp)


@dataclass
class Chain:
    """Where the newest snapshot chain of a partition is, and what it weighs.

    Attributes:
        slot: the slot of its base (its deltas share it).
        manifests: offsets of its manifests: the base's, then each delta's.
        start: the offset of its base's first chunk (a loader reads from there).
        base_bytes: the size of its base's body.
        delta_bytes: the sizes of its deltas' bodies, added up.
    """

    slot: int
    manifests: list[int]
    start: int
    base_bytes: int
    delta_bytes: int = 0

    def wants_base(self, changed: int, held: int) -> bool:
        """Whether the next snapshot should be a base, with ``changed`` of the ``held`` runs
        and tombstones changed: the chain is long or heavy enough, or most changed anyway."""
        return (
            len(self.manifests) > MAX_DELTAS
            or self.delta_bytes > DELTA_FRACTION * self.base_bytes
            or 2 * changed > held
        )


class SnapshotInvalid(Exception):
    """A snapshot that must not be used (the reason is the message)."""


class SnapshotFenced(Exception):
    """A snapshot not written: a newer owner of its partition has written one since this
    writer loaded it (the reason is the message)."""


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
        self._slots: dict[int, int] = {}  # the slot of each partition's newest base
        self._chains: dict[int, Chain] = {}  # each partition's newest chain, if it goes on
        #: per partition, this writer's epoch: the offset of the claim it appended as it
        #: loaded the partition (a later owner's claim comes later in the log)
        self._epochs: dict[int, int] = {}
        #: per partition, the manifest position this writer committed or loaded last
        self._committed: dict[int, int] = {}
        self._ready = False

    async def _ensure(self, partitions: int) -> None:
        if not self._ready:
            await self._log.ensure_topic(self.topic, partitions, keep_forever=True, compact=True)
            self._ready = True

    # -- chains ---------------------------------------------------------------------------------

    def chain(self, partition: int) -> Chain | None:
        """The chain a delta of ``partition`` would go on (None: the next one is a base)."""
        return self._chains.get(partition)

    def reset(self, partition: int) -> None:
        """Make the next snapshot of ``partition`` a base (what a delta would follow is not
        known: a write failed, or the partition was loaded without a snapshot)."""
        self._chains.pop(partition, None)

    # -- writing --------------------------------------------------------------------------------

    def encode(self, partition: int, image: PartitionImage, *, delta: bool = False) -> bytes:
        """The body of a snapshot of ``partition`` (raises :class:`CodecError` if a value is
        not JSON-able); ``delta``: of a delta."""
        runs = [encode(state) for state in image.runs]
        return self.body(partition, image, runs, delta=delta)

    def body(
        self, partition: int, image: PartitionImage, runs: Sequence[bytes], *, delta: bool = False
    ) -> bytes:
        """The body of a snapshot of ``partition`` whose runs are already encoded (``runs``,
        in place of ``image.runs``)."""
        rest: dict[str, Any] = {
            "format": DELTA_FORMAT if delta else FORMAT,
            "topic": self.history,
            "partition": partition,
            "covered": image.covered,
            "fingerprint": schema_fingerprint(RunState),
            "ended": image.ended,
            "parked": image.parked,
            "stamp": image.stamp,
        }
        if delta:
            rest["gone"] = image.gone
        # Spliced, not dumped whole: each run was encoded on its own, in slices of the loop.
        return b'{"runs":[' + b",".join(runs) + b"]," + encode(rest)[1:]

    async def write(
        self, partition: int, partitions: int, covered: int, body: bytes, *, delta: bool = False
    ) -> int:
        """Append ``body`` (from :meth:`encode`) as the newest snapshot of ``partition``, then
        commit its manifest's position. Returns the manifest's offset.

        ``delta``: a delta on the partition's :meth:`chain` (there must be one).

        Raises :class:`SnapshotFenced`, before it appends anything and again before it
        commits, when the newest snapshot was written by a later owner: each manifest holds
        its writer's epoch (the offset of the claim the writer appended as it loaded the
        partition), so an owner that lost the partition and writes late cannot replace a
        newer owner's snapshot.
        """
        await self._ensure(partitions)
        epoch = self._epochs.get(partition, 0)
        await self._fence(partition, epoch)
        chain = self._chains.get(partition)
        if delta:
            if chain is None:
                raise ValueError(f"no snapshot of partition {partition} for a delta to follow")
            slot, prefix = chain.slot, f"{partition}/{chain.slot}/d{len(chain.manifests)}"
        else:
            slot = 1 - self._slots.get(partition, 1)
            prefix = f"{partition}/{slot}"
        # Cutting and hashing a large body is CPU the loop need not wait for.
        chunks, digest = await asyncio.to_thread(_seal, body, self._chunk)
        placed = await self._writer.append(
            [
                Message(
                    self.topic,
                    chunk,
                    key=f"{prefix}/{n}",
                    partition=partition,
                    headers=((_KIND, b"chunk"),),
                )
                for n, chunk in enumerate(chunks)
            ]
        )
        manifest: dict[str, Any] = {
            "format": DELTA_FORMAT if delta else FORMAT,
            "topic": self.history,
            "partition": partition,
            "covered": covered,
            "fingerprint": schema_fingerprint(RunState),
            "chunks": [offset for _, offset in placed],
            "size": len(body),
            "sha256": digest,
            "slot": slot,
            "epoch": epoch,
        }
        if delta:
            assert chain is not None
            manifest["chain"] = chain.manifests
            manifest["start"] = chain.start
        [(tp, offset)] = await self._writer.append(
            [
                Message(
                    self.topic,
                    orjson.dumps(manifest),
                    key=f"{prefix}/manifest",
                    partition=partition,
                    headers=((_KIND, b"manifest"),),
                )
            ]
        )
        await self._fence(partition, epoch)  # once more: the chunks took a while
        await self._log.commit_group(self.group, {tp: offset + 1})
        self._committed[partition] = offset + 1
        if delta:
            assert chain is not None
            chain.manifests = [*chain.manifests, offset]
            chain.delta_bytes += len(body)
        else:
            self._slots[partition] = slot
            start = min(manifest["chunks"], default=offset)
            self._chains[partition] = Chain(slot, [offset], start, len(body))
        return offset

    async def _fence(self, partition: int, epoch: int) -> None:
        """Raise :class:`SnapshotFenced` if the newest snapshot of ``partition`` was written
        by a later owner than the one of ``epoch`` (an owner that lost the partition must not
        replace what its new owner wrote)."""
        tp = TopicPartition(self.topic, partition)
        committed = (await self._log.group_offsets(self.group, [tp])).get(tp)
        if not committed or committed == self._committed.get(partition):
            return  # none yet, or still what this writer committed (or loaded)
        record = await _read_one(self._log, tp, committed - 1)
        if record is None or dict(record.headers).get(_KIND) != b"manifest":
            return  # unreadable: the loader will not use it either
        try:
            newest = int(orjson.loads(record.value).get("epoch", 0))
        except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
            return
        if newest > epoch:
            raise SnapshotFenced(
                f"history partition {partition} has a newer owner (epoch {newest}, not {epoch})"
            )

    # -- loading --------------------------------------------------------------------------------

    async def load(self, partitions: list[int], count: int) -> dict[int, PartitionImage]:
        """The newest valid snapshot of each of ``partitions`` that has one (its chain applied).

        A snapshot that cannot be used is logged as a warning and left out (its partition is
        then folded from offset 0). ``count`` is the history's partition count. The loader
        claims each partition (its epoch, see :meth:`write`); its next snapshot of a partition
        is a base, in the slot the loaded chain does not use.
        """
        await self._ensure(count)
        tps = [TopicPartition(self.topic, p) for p in partitions]
        # This owner's epoch of each partition: its claim's offset, after any earlier owner's.
        claims = await self._writer.append(
            [
                Message(
                    self.topic,
                    b"{}",
                    key=f"{tp.partition}/claim",
                    partition=tp.partition,
                    headers=((_KIND, b"claim"),),
                )
                for tp in tps
            ]
        )
        self._epochs.update({tp.partition: offset for tp, offset in claims})
        committed = await self._log.group_offsets(self.group, tps)
        self._committed.update({tp.partition: o for tp, o in committed.items() if o})
        manifests = {tp: offset - 1 for tp, offset in committed.items() if offset}
        for p in partitions:
            self._chains.pop(p, None)
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
            if "chain" in manifest:
                starts[tp] = min(manifest["start"], at)
            else:
                starts[tp] = min(manifest["chunks"], default=at)
        chunks = await self._log.read_partitions(starts) if starts else {}
        images: dict[int, PartitionImage] = {}
        for tp, manifest in found.items():
            try:
                # In a thread: decoding many live runs takes a while, and the loop goes on.
                image, chain = await asyncio.to_thread(
                    self._image, manifest, manifests[tp], chunks[tp], tp.partition
                )
            except (SnapshotInvalid, CodecError) as exc:
                snapshot_invalid(tp.partition, exc)
                continue
            images[tp.partition] = image
            # The next snapshot is a base, in the other slot: a delta key of this chain may
            # still be written by the owner before, unaware it lost the partition.
            self._slots[tp.partition] = chain.slot
        return images

    def _image(
        self, newest: dict[str, Any], at: int, records: list[Record], partition: int
    ) -> tuple[PartitionImage, Chain]:
        """The image the chain ending with manifest ``newest`` (at offset ``at``) makes, and
        the part of the chain used: a bad delta (its manifest, chunks or body)
        leaves the image of the base and the deltas before it, with a warning (the tail is
        then folded from the offset they cover); a bad base raises :class:`SnapshotInvalid`."""
        by_offset = {r.offset: r for r in records}
        offsets = [*newest.get("chain", ()), at]
        sizes: list[int] = []
        image: PartitionImage | None = None
        previous: dict[str, Any] | None = None
        for n, offset in enumerate(offsets):
            try:
                manifest = newest if offset == at else self._link(by_offset, offset, partition)
                _check_link(manifest, n, offsets, newest, previous)
                body = _body(manifest, by_offset)
                part = decode_body(body, partition, delta=n > 0)
                if part.covered != manifest["covered"]:
                    raise SnapshotInvalid(f"the body of the manifest at {offset} does not match it")
            except (SnapshotInvalid, CodecError) as exc:
                if image is None:
                    raise
                log.warning(
                    "orchestrator: delta %d of the snapshot of history partition %d (manifest "
                    "at offset %d) cannot be used (%s); using the chain up to the delta before "
                    "it and folding the partition from offset %d",
                    n,
                    partition,
                    offset,
                    exc,
                    image.covered,
                )
                break
            sizes.append(len(body))
            image = part if image is None else apply(image, part)
            previous = manifest
        assert image is not None
        base = self._link(by_offset, offsets[0], partition) if offsets[0] != at else newest
        slot = int(base.get("slot", self._slots.get(partition, 1)))
        start = min(base["chunks"], default=offsets[0])
        used = offsets[: len(sizes)]
        return image, Chain(slot, used, start, sizes[0], sum(sizes[1:]))

    def _link(self, by_offset: dict[int, Record], offset: int, partition: int) -> dict[str, Any]:
        """The manifest at ``offset`` of a chain, read among its records."""
        found = [by_offset[offset]] if offset in by_offset else []
        return _manifest(found, offset, self.history, partition)


def _check_link(
    manifest: dict[str, Any],
    n: int,
    offsets: list[int],
    newest: dict[str, Any],
    previous: dict[str, Any] | None,
) -> None:
    """Raise :class:`SnapshotInvalid` unless ``manifest`` is the ``n``-th of the chain
    ``offsets`` that ends with ``newest`` (``previous``: the one before it)."""
    offset = offsets[n]
    kind = DELTA_FORMAT if n else FORMAT
    if manifest["format"] != kind or int(manifest.get("slot", -1)) != int(newest.get("slot", -1)):
        raise SnapshotInvalid(f"the manifest at offset {offset} is not of its chain")
    if n and (manifest["chain"] != offsets[:n] or manifest["start"] != newest["start"]):
        raise SnapshotInvalid(f"the manifest at offset {offset} names another chain")
    if previous is not None and manifest["covered"] < previous["covered"]:
        raise SnapshotInvalid(f"the manifest at offset {offset} goes back in the history")


async def _read_one(log_: EventLog, tp: TopicPartition, offset: int) -> Record | None:
    """The record of ``tp`` at ``offset`` (None: not there, e.g. compacted away)."""
    async with log_.reader({tp: offset}) as reader:
        for _ in range(20):
            for record in await reader.poll(timeout=0.25, max_records=1):
                return record if record.offset == offset else None
            if reader.lag(tp) == 0:
                return None
    return None


def _seal(body: bytes, size: int) -> tuple[list[bytes], str]:
    """``body`` cut into chunks of ``size`` bytes at most, and its sha256."""
    chunks = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
    return chunks, hashlib.sha256(body).hexdigest()


def _body(manifest: dict[str, Any], by_offset: dict[int, Record]) -> bytes:
    """The body ``manifest`` names, checked against its size and checksum."""
    parts = []
    for offset in manifest["chunks"]:
        record = by_offset.get(offset)
        if record is None or dict(record.headers).get(_KIND) != b"chunk":
            raise SnapshotInvalid(f"chunk at offset {offset} is missing")
        parts.append(record.value)
    body = b"".join(parts)
    if len(body) != manifest["size"] or hashlib.sha256(body).hexdigest() != manifest["sha256"]:
        raise SnapshotInvalid("its checksum does not match")
    return body


def decode_body(body: bytes, partition: int, *, delta: bool = False) -> PartitionImage:
    """The image :meth:`Snapshots.encode` made ``body`` of, for ``partition`` (``delta``: of a
    delta); raises :class:`SnapshotInvalid` if it is not one (another format, partition or
    schema)."""
    try:
        data = orjson.loads(body)
        found = (data["format"], data["partition"], data["fingerprint"])
        expected = (DELTA_FORMAT if delta else FORMAT, partition, schema_fingerprint(RunState))
        if found != expected:
            raise SnapshotInvalid(f"its body is of {found}, not {expected}")
        return PartitionImage(
            covered=int(data["covered"]),
            runs=[shared(from_json(state, RunState)) for state in data["runs"]],
            ended=[(str(r), int(n), float(t)) for r, n, t in data["ended"]],
            parked={str(k): str(v) for k, v in data["parked"].items()},
            stamp=None if data.get("stamp") is None else int(data["stamp"]),
            gone=[str(r) for r in data["gone"]] if delta else [],
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
            "topic": history,
            "partition": partition,
            "fingerprint": schema_fingerprint(RunState),
        }
        if manifest["format"] not in (FORMAT, DELTA_FORMAT):
            raise SnapshotInvalid(f"its format is {manifest['format']!r}, not {FORMAT!r}")
        for name, expected in checks.items():
            if manifest[name] != expected:
                raise SnapshotInvalid(f"its {name} is {manifest[name]!r}, not {expected!r}")
        if not isinstance(manifest["covered"], int) or not isinstance(manifest["chunks"], list):
            raise SnapshotInvalid("its manifest is malformed")
        if manifest["format"] == DELTA_FORMAT and not (
            isinstance(manifest.get("chain"), list)
            and manifest["chain"]
            and all(isinstance(o, int) and o < at for o in manifest["chain"])
            and isinstance(manifest.get("start"), int)
        ):
            raise SnapshotInvalid("its chain is malformed")
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
