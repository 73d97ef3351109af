"""The engine's settings read from its arguments or the environment: the store, the
snapshot cadence, the archive and its retention."""

from __future__ import annotations

import os

from deerflow.errors import DeerflowError
from deerflow.runtime._archivestore import ArchiveStore, open_archive, parse_retention
from deerflow.runtime._orchestrator import SNAPSHOT_EVERY
from deerflow.runtime._settings import whole_number

__all__ = [
    "DEFAULT_RETENTION",
    "DEFAULT_STORE",
    "archive_setting",
    "default_store",
    "snapshot_setting",
]

DEFAULT_STORE = "sqlite:///deerflow.db"
#: How long after it ended a run is archived, when an archive is configured.
DEFAULT_RETENTION = "30d"


def snapshot_setting(given: int | None) -> int:
    """``snapshot_every`` as given, else ``DEERFLOW_SNAPSHOT_EVERY``, else the default."""
    given = whole_number(given, "DEERFLOW_SNAPSHOT_EVERY", SNAPSHOT_EVERY, "records")
    if given < 0:
        raise DeerflowError(f"snapshot_every must be 0 (none) or more, not {given}")
    return given


def default_store() -> str:
    """``DEERFLOW_STORE``, else an SQLite file ``deerflow.db`` in the working directory."""
    return os.environ.get("DEERFLOW_STORE") or DEFAULT_STORE


def archive_setting(
    archive: str | ArchiveStore | None, retention: str | float | None
) -> tuple[ArchiveStore, float] | None:
    """The archive (``DEERFLOW_ARCHIVE``) and the age in seconds past which ended runs go to
    it (``DEERFLOW_RETENTION``, default ``30d``); None when no archive is configured.

    Raises:
        DeerflowError: a retention that is not a duration, in any process (not only in one
            that archives).
    """
    archive = archive or os.environ.get("DEERFLOW_ARCHIVE") or None
    if archive is None:
        return None
    store = archive if isinstance(archive, ArchiveStore) else open_archive(archive)
    if retention is None:
        retention = os.environ.get("DEERFLOW_RETENTION") or DEFAULT_RETENTION
    return store, parse_retention(retention)
