"""How an error says a value is too large for its log, in one wording everywhere."""

from __future__ import annotations

__all__ = ["beyond_limit", "size_text"]


def size_text(n: int) -> str:
    """``n`` bytes as an error shows them: ``1.2 MB`` from 100 kB up, else ``812 bytes``."""
    return f"{n / 1_000_000:.1f} MB" if n >= 100_000 else f"{n} bytes"


def beyond_limit(limit: int) -> str:
    """The end of a too-large error: the limit, and what to configure instead."""
    return (
        f"more than the {size_text(limit)} a payload may be on this log; configure a blob "
        "store (Engine(blobs='s3://bucket/prefix') or DEERFLOW_BLOBS) to pass large values by "
        "reference"
    )
