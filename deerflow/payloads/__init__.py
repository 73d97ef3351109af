"""Payloads between the runtime and the log: the codec seam, claim checks and blob stores.

``Engine(blobs="s3://bucket/prefix")`` (or ``DEERFLOW_BLOBS``; a SQLite store defaults to a
directory beside its file) keeps every value above ``payload_threshold`` bytes (256 kB by
default) in the blob store; the history and the task queue carry a reference with the blob's
size and SHA-256, and readers resolve it. See docs/reference/payloads.md.
"""

from deerflow.payloads._blobs import BlobStore, LocalBlobStore, MemoryBlobStore
from deerflow.payloads._claimcheck import (
    DEFAULT_THRESHOLD,
    BlobRef,
    ClaimCheck,
    blob_prefix,
    reference,
)
from deerflow.payloads._limit import ReferenceLimit, beyond_limit, size_text
from deerflow.payloads._log import (
    DEFAULT_LIMIT,
    ERROR_HEADER,
    PayloadLog,
    lost_fields,
    payload_error,
    stored_in,
)
from deerflow.payloads._open import open_blob_store
from deerflow.payloads._s3 import S3BlobStore
from deerflow.payloads.base import PayloadCodec

__all__ = [
    "DEFAULT_LIMIT",
    "DEFAULT_THRESHOLD",
    "ERROR_HEADER",
    "BlobRef",
    "BlobStore",
    "ClaimCheck",
    "LocalBlobStore",
    "MemoryBlobStore",
    "PayloadCodec",
    "PayloadLog",
    "ReferenceLimit",
    "S3BlobStore",
    "beyond_limit",
    "blob_prefix",
    "lost_fields",
    "open_blob_store",
    "payload_error",
    "reference",
    "size_text",
    "stored_in",
]
