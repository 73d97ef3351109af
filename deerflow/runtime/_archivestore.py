"""Where archived runs go: a local directory or S3, one gzipped JSON-lines object per run.

One object per run (``runs/<run id>.jsonl.gz``), not per segment: reading an archived run
back (``deerflow runs show``, the API, the dashboard) then fetches that run alone, rewriting
one run is idempotent by its name, and a run's history is seldom more than a few kB. The
cost is one write per run; at high rates, a lifecycle rule on the bucket (S3 Intelligent
Tiering, Glacier) keeps many small objects cheap.

The first line describes the run (format, run id, partition, offsets, record count); each
further line is one history record: its offset, key, timestamp, headers (base64) and value
(the history event as JSON).
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import deerflow._codec as _codec
from deerflow._durations import parse_duration
from deerflow.errors import DeerflowError, MissingDependency
from deerflow.log.base import Record

#: Version of the object's layout; a reader refuses another.
ARCHIVE_FORMAT = 1


class ArchiveError(DeerflowError):
    """An archive cannot be written or read back as written."""


def parse_retention(text: str | float) -> float:
    """Seconds from ``30d``, ``12h``, ``90m``, ``45s``, ``2w`` or a number of seconds.

    Raises:
        ArchiveError: for anything else, naming the forms taken.
    """
    try:
        return parse_duration(text, "retention")
    except ValueError as exc:
        raise ArchiveError(str(exc)) from None


@dataclass(frozen=True, slots=True)
class ArchivedRun:
    """A run's history as read back from its archive."""

    run_id: str
    partition: int
    records: list[Record]


def encode_run(run_id: str, topic: str, partition: int, records: Sequence[Record]) -> bytes:
    """The gzipped JSON lines of ``run_id``'s history ``records``."""
    head = {
        "format": ARCHIVE_FORMAT,
        "run_id": run_id,
        "topic": topic,
        "partition": partition,
        "first_offset": records[0].offset if records else None,
        "last_offset": records[-1].offset if records else None,
        "records": len(records),
    }
    lines = [_codec.dumps(head)]
    for r in records:
        lines.append(
            _codec.dumps({
                "offset": r.offset,
                "key": r.key,
                "ts": r.timestamp_ms,
                "headers": [[n, base64.b64encode(v).decode()] for n, v in r.headers],
                "event": _codec.loads(r.value),
            })
        )  # fmt: skip
    # mtime=0: the same history gives the same bytes, so a rewrite is byte-identical
    return gzip.compress(b"\n".join(lines) + b"\n", compresslevel=6, mtime=0)


def decode_run(data: bytes, where: str) -> ArchivedRun:
    """Read back what :func:`encode_run` wrote.

    Raises:
        ArchiveError: not gzip, not JSON lines, another format, or a record count that
            differs from the header's (a cut object).
    """
    try:
        lines = gzip.decompress(data).splitlines()
        head = _codec.loads(lines[0])
        body = [_codec.loads(line) for line in lines[1:] if line]
    except Exception as exc:
        raise ArchiveError(f"archive {where} cannot be read: {exc}") from exc
    if not isinstance(head, dict) or head.get("format") != ARCHIVE_FORMAT:
        raise ArchiveError(f"archive {where} is not in archive format {ARCHIVE_FORMAT}")
    if head.get("records") != len(body):
        raise ArchiveError(
            f"archive {where} holds {len(body)} records, its header says {head.get('records')}"
        )
    topic, partition = str(head["topic"]), int(head["partition"])
    records = [
        Record(
            topic,
            partition,
            int(line["offset"]),
            line["key"],
            _codec.dumps(line["event"]),
            tuple((str(n), base64.b64decode(v)) for n, v in line["headers"]),
            int(line["ts"]),
        )
        for line in body
    ]
    return ArchivedRun(str(head["run_id"]), partition, records)


def digest(data: bytes) -> str:
    """The SHA-256 of an archive object, as hex (stored in the run index)."""
    return hashlib.sha256(data).hexdigest()


class ArchiveStore(ABC):
    """A place archived runs are written to and read back from."""

    url: str

    @staticmethod
    def name(run_id: str) -> str:
        """The object name of ``run_id``'s archive (under the store's directory or prefix)."""
        return f"runs/{quote(run_id, safe='')}.jsonl.gz"

    @abstractmethod
    def location(self, run_id: str) -> str:
        """Where ``run_id``'s archive lies (a ``file://`` or ``s3://`` URL)."""

    @abstractmethod
    def put(self, run_id: str, data: bytes) -> str:
        """Write ``run_id``'s archive (replacing any); returns its location. Blocking."""

    def get(self, location: str) -> bytes:
        """The bytes at ``location``. Blocking.

        Raises:
            ArchiveError: missing or unreadable.
        """
        return read_location(location)


class FileArchive(ArchiveStore):
    """Archives in a local directory; a write is atomic (a temporary file renamed)."""

    def __init__(self, directory: str) -> None:
        self.directory = os.path.abspath(directory)
        self.url = f"file://{self.directory}"

    def location(self, run_id: str) -> str:
        return f"file://{os.path.join(self.directory, self.name(run_id))}"

    def put(self, run_id: str, data: bytes) -> str:
        path = os.path.join(self.directory, self.name(run_id))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp)
            raise
        dir_fd = os.open(os.path.dirname(path), os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself survives a power cut
        finally:
            os.close(dir_fd)
        return f"file://{path}"


class S3Archive(ArchiveStore):
    """Archives in an S3 bucket under a prefix, through boto3.

    Endpoint, region and credentials come from boto3's usual configuration
    (``AWS_ENDPOINT_URL``, ``AWS_REGION``, profiles, ...) or the URL's ``endpoint_url`` and
    ``region`` query options.
    """

    def __init__(self, bucket: str, prefix: str = "", **options: str) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self._client = _s3_client(**options)

    def _key(self, run_id: str) -> str:
        return f"{self.prefix}/{self.name(run_id)}" if self.prefix else self.name(run_id)

    def location(self, run_id: str) -> str:
        return f"s3://{self.bucket}/{self._key(run_id)}"

    def put(self, run_id: str, data: bytes) -> str:
        key = self._key(run_id)
        checksum = base64.b64encode(hashlib.md5(data).digest()).decode()
        self._client.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=data,
            ContentMD5=checksum,
            ContentType="application/gzip",
        )
        return f"s3://{self.bucket}/{key}"

    def get(self, location: str) -> bytes:
        parts = urlsplit(location)
        try:
            found = self._client.get_object(Bucket=parts.netloc, Key=parts.path.lstrip("/"))
            return bytes(found["Body"].read())
        except Exception as exc:
            raise ArchiveError(f"archive {location} cannot be read: {exc}") from exc


def _s3_client(**options: str) -> Any:
    try:
        import boto3
    except ImportError as exc:  # pragma: no cover - only without the extra
        raise MissingDependency("an s3:// archive needs boto3: pip install 'deerflow[s3]'") from exc
    session = boto3.session.Session(region_name=options.get("region"))
    kwargs: dict[str, Any] = {}
    if options.get("endpoint_url"):
        kwargs["endpoint_url"] = options["endpoint_url"]
    if session.region_name is None:
        kwargs["region_name"] = "us-east-1"
    return session.client("s3", **kwargs)


def open_archive(url: str) -> ArchiveStore:
    """The archive store ``url`` names: ``file:///dir`` (or a plain path) or
    ``s3://bucket/prefix[?endpoint_url=...&region=...]``.

    Raises:
        ArchiveError: another scheme, or an S3 URL without a bucket.
    """
    parts = urlsplit(url)
    if parts.scheme in ("", "file"):
        path = parts.path if parts.scheme else url
        if not path:
            raise ArchiveError(f"archive {url!r} names no directory")
        return FileArchive(path)
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ArchiveError(f"archive {url!r} names no bucket: use s3://bucket/prefix")
        options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        unknown = set(options) - {"endpoint_url", "region"}
        if unknown:
            raise ArchiveError(
                f"archive {url!r}: unknown option {sorted(unknown)[0]!r} "
                "(endpoint_url and region are taken)"
            )
        return S3Archive(parts.netloc, parts.path, **options)
    raise ArchiveError(
        f"archive {url!r}: use file:///directory or s3://bucket/prefix, not {parts.scheme}://"
    )


def read_location(location: str, *, endpoint_url: str | None = None) -> bytes:
    """The bytes of the archive object at ``location`` (``file://`` or ``s3://``). Blocking.

    Raises:
        ArchiveError: it is missing or cannot be read.
    """
    parts = urlsplit(location)
    try:
        if parts.scheme == "file":
            with open(parts.path, "rb") as file:
                return file.read()
        if parts.scheme == "s3":
            options = {"endpoint_url": endpoint_url} if endpoint_url else {}
            client = _s3_client(**options)
            body = client.get_object(Bucket=parts.netloc, Key=parts.path.lstrip("/"))["Body"]
            return bytes(body.read())
    except MissingDependency:
        raise
    except Exception as exc:
        raise ArchiveError(f"archive {location} cannot be read: {exc}") from exc
    raise ArchiveError(f"archive location {location!r} is neither file:// nor s3://")
