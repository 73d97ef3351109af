"""How an error says a value is too large for its log, in one wording everywhere."""

from __future__ import annotations

__all__ = ["ReferenceLimit", "beyond_limit", "size_text"]


class ReferenceLimit(int):
    """The ``max_value_bytes`` of a log that already keeps large values in a blob store.

    An ``int`` (callers compare sizes with it as with any log's limit) that tells
    :func:`beyond_limit` the advice to configure a blob store does not apply.
    """


def size_text(n: int) -> str:
    """``n`` bytes as an error shows them: ``1.2 MB`` from 100 kB up, else ``812 bytes``."""
    return f"{n / 1_000_000:.1f} MB" if n >= 100_000 else f"{n} bytes"


def beyond_limit(limit: int) -> str:
    """The end of a too-large error: the limit, and what to do instead."""
    if isinstance(limit, ReferenceLimit):
        return (
            f"more than the {size_text(limit)} a value may be even in the blob store; pass a "
            "reference to where the data lies (an object key, a URL) instead of the data"
        )
    return (
        f"more than the {size_text(limit)} a payload may be on this log; configure a blob "
        "store (Engine(blobs='s3://bucket/prefix') or DEERFLOW_BLOBS) to pass large values by "
        "reference"
    )
