"""Opening a blob store by URL."""

from __future__ import annotations

from urllib.parse import urlsplit

from deerflow.errors import EventStoreError
from deerflow.payloads._blobs import BlobStore, LocalBlobStore, MemoryBlobStore
from deerflow.payloads._s3 import S3BlobStore

__all__ = ["open_blob_store"]


def open_blob_store(url: str) -> BlobStore:
    """The blob store a URL names: ``file:///dir`` (or a plain path), ``s3://bucket[/prefix]``,
    ``memory://``.

    Raises:
        EventStoreError: an unknown scheme.
    """
    parts = urlsplit(url)
    if parts.scheme in ("", "file"):
        return LocalBlobStore(parts.path if parts.scheme else url)
    if parts.scheme == "memory":
        return MemoryBlobStore()
    if parts.scheme == "s3":
        return S3BlobStore(parts.netloc, prefix=parts.path.strip("/"))
    raise EventStoreError(
        f"unknown blob store URL {url!r}: use file:///dir, s3://bucket/prefix or memory://",
        retriable=False,
    )
