"""The run index's rows: their SQL tables, typed search attributes, queries, and how a folded
run becomes a row and a row a summary of the run.

:mod:`deerflow.runtime._visibility` keeps these rows in SQLite; this module is what a row is.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import deerflow._codec as _codec
from deerflow.core import history as h
from deerflow.core.state import LIVE_STATUSES, RUN_RUNNING, SHOWN, RunState

#: Bumped when the tables change: an index of a version :data:`MIGRATIONS` does not lead
#: from is rebuilt from the history.
SCHEMA_VERSION = 3
#: JSON values (params, input, output, trigger) larger than this stay out of a row; a run's
#: own history gives them back (``get_run``).
ROW_VALUE_LIMIT = 8192

SCHEMA = """
CREATE TABLE IF NOT EXISTS runindex_meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runindex_offsets (
    topic TEXT NOT NULL,
    partition_id INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS runindex_runs (
    run_id TEXT PRIMARY KEY,
    workflow TEXT NOT NULL,
    version TEXT NOT NULL,
    status TEXT NOT NULL,
    parked TEXT,
    trigger_kind TEXT,
    trigger_name TEXT,
    parent_run_id TEXT,
    correlation_id TEXT,
    started_at REAL NOT NULL,
    finished_at REAL,
    error TEXT,
    failed_task TEXT,
    extras TEXT,
    retries INTEGER NOT NULL,
    events INTEGER NOT NULL,
    output_size INTEGER,
    partition_id INTEGER NOT NULL,
    first_offset INTEGER NOT NULL,
    last_offset INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS runindex_by_start ON runindex_runs (started_at, run_id);
CREATE INDEX IF NOT EXISTS runindex_by_workflow
    ON runindex_runs (workflow, started_at, run_id);
CREATE INDEX IF NOT EXISTS runindex_by_status ON runindex_runs (status, started_at, run_id);
CREATE INDEX IF NOT EXISTS runindex_by_trigger
    ON runindex_runs (trigger_kind, started_at, run_id);
CREATE INDEX IF NOT EXISTS runindex_by_parent ON runindex_runs (parent_run_id);
CREATE INDEX IF NOT EXISTS runindex_by_end ON runindex_runs (finished_at)
    WHERE finished_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS runindex_by_trigger_name
    ON runindex_runs (trigger_name, started_at, run_id);
CREATE TABLE IF NOT EXISTS runindex_counts (
    workflow TEXT NOT NULL,
    status TEXT NOT NULL,
    runs INTEGER NOT NULL,
    PRIMARY KEY (workflow, status)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS runindex_count_new AFTER INSERT ON runindex_runs BEGIN
    INSERT INTO runindex_counts VALUES (NEW.workflow, _LABEL_NEW, 1)
    ON CONFLICT (workflow, status) DO UPDATE SET runs = runs + 1;
END;
CREATE TRIGGER IF NOT EXISTS runindex_count_moved AFTER UPDATE OF status, parked ON runindex_runs
WHEN _LABEL_OLD IS NOT _LABEL_NEW BEGIN
    UPDATE runindex_counts SET runs = runs - 1
    WHERE workflow = OLD.workflow AND status = _LABEL_OLD;
    INSERT INTO runindex_counts VALUES (NEW.workflow, _LABEL_NEW, 1)
    ON CONFLICT (workflow, status) DO UPDATE SET runs = runs + 1;
END;
CREATE TABLE IF NOT EXISTS runindex_attributes (
    run_id TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    value ANY,
    PRIMARY KEY (run_id, name)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS runindex_attributes_by_value
    ON runindex_attributes (name, kind, value);
"""

#: The statements that bring an index of schema ``n`` to ``n + 1``, in place: nothing in it
#: is lost (rows of purged runs could not be rebuilt from the history).
MIGRATIONS: dict[int, tuple[str, ...]] = {
    # 2 -> 3: a state machine's state moves from its own column to the row's extension
    # values, under the part of the run state the machine's fold keeps it in.
    2: (
        "ALTER TABLE runindex_runs ADD COLUMN extras TEXT",
        "UPDATE runindex_runs SET extras = json_object('machine', json_object('state', "
        "machine_state)) WHERE machine_state IS NOT NULL",
        "ALTER TABLE runindex_runs DROP COLUMN machine_state",
    ),
}

#: The columns of a run's row, in the order :func:`row_values` gives them.
ROW_COLUMNS = (
    "run_id", "workflow", "version", "status", "parked", "trigger_kind", "trigger_name",
    "parent_run_id", "correlation_id", "started_at", "finished_at", "error", "failed_task",
    "extras", "retries", "events", "output_size", "partition_id", "first_offset",
    "last_offset", "body",
)  # fmt: skip

#: Archived runs: where each run's history was written, and when its records left the log;
#: and when each archived run's blobs were deleted (``runindex_blobs``: the task queue's end
#: offsets when the run was noted, as JSON, so that its task messages are known gone once
#: every task partition starts past them), and the ids of its tasks (a JSON list, when noted as
#: it was archived; else read from its archive).
#: Not among :data:`TABLES`: an index rebuilt from the history keeps it, since the history
#: of a purged run is no longer there to rebuild it from.
ARCHIVE_SCHEMA = """
CREATE TABLE IF NOT EXISTS runindex_archive (
    run_id TEXT PRIMARY KEY,
    location TEXT NOT NULL,
    records INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    last_offset INTEGER NOT NULL,
    archived_at REAL NOT NULL,
    purged_at REAL
);
CREATE INDEX IF NOT EXISTS runindex_archive_unpurged ON runindex_archive (archived_at)
    WHERE purged_at IS NULL;
CREATE TABLE IF NOT EXISTS runindex_blobs (
    run_id TEXT PRIMARY KEY,
    noted_at REAL NOT NULL,
    tasks_ends TEXT NOT NULL,
    tasks TEXT,
    swept_at REAL
);
CREATE INDEX IF NOT EXISTS runindex_blobs_unswept ON runindex_blobs (noted_at)
    WHERE swept_at IS NULL;
"""

#: A row's status as counted: a running run its owner parked counts as parked.
_LABEL = (
    "CASE WHEN {0}.status = 'running' AND {0}.parked IS NOT NULL THEN 'parked' ELSE {0}.status END"
)
SCHEMA = SCHEMA.replace("_LABEL_NEW", _LABEL.format("NEW")).replace(
    "_LABEL_OLD", _LABEL.format("OLD")
)
TABLES = (
    "runindex_meta",
    "runindex_offsets",
    "runindex_runs",
    "runindex_attributes",
    "runindex_counts",
)

#: Statuses a row's columns tell apart: a parked run is running, its row says parked.
STATUS = {
    "parked": "status = 'running' AND parked IS NOT NULL",
    RUN_RUNNING: "status = 'running' AND parked IS NULL",
}

INT64 = (1 << 63) - 1

#: The types a search attribute may have, by the name the store keeps.
ATTRIBUTE_KINDS = ("str", "int", "float", "bool", "datetime")


def attribute_value(name: str, value: Any) -> tuple[str, Any]:
    """``(kind, value as stored)`` of a search attribute; ``TypeError`` for another type.

    A datetime is stored as epoch seconds (a naive one is taken as UTC).
    """
    if not isinstance(name, str) or not name or len(name) > 200:
        raise TypeError(f"a search attribute's name is a non-empty string, not {name!r}")
    if isinstance(value, bool):
        return "bool", int(value)
    if isinstance(value, int):
        if not -INT64 <= value <= INT64:
            raise TypeError(f"search attribute {name!r} is an int beyond 64 bits")
        return "int", value
    if isinstance(value, float):
        return "float", value
    if isinstance(value, str):
        return "str", value
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return "datetime", moment.timestamp()
    raise TypeError(
        f"search attribute {name!r} is a {type(value).__name__}: "
        "use str, int, float, bool or datetime"
    )


def attribute_python(kind: str, stored: Any) -> Any:
    """The Python value of a stored search attribute."""
    if kind == "bool":
        return bool(stored)
    if kind == "datetime":
        return datetime.fromtimestamp(float(stored), UTC)
    return stored


@dataclass(frozen=True, slots=True)
class RunQuery:
    """Which runs to list, newest first; every criterion is optional.

    Attributes:
        workflow: the workflow's name.
        status: a run status (``parked`` runs are the running ones their owner parked).
        trigger: a trigger kind or name (``manual`` for runs started by hand, ``parent`` for
            sub-workflow runs).
        parent: the run that started them as sub-workflows.
        since, until: bounds of the start time, epoch seconds, inclusive.
        state: a state machine's current state (the filter ``state`` of ``extras``).
        attributes: search attributes the run must have, with these values.
        extras: values fold extensions keep in the row (``FoldExtension.indexed``), by filter
            name.
        after: the id of the last run of the previous page (cursor pagination).
        limit: at most this many runs.
    """

    workflow: str | None = None
    status: str | None = None
    trigger: str | None = None
    parent: str | None = None
    since: float | None = None
    until: float | None = None
    state: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    after: str | None = None
    limit: int | None = 100
    extras: Mapping[str, Any] = field(default_factory=dict)

    def extension_filters(self) -> dict[str, Any]:
        """The filters on extension values, ``state`` among them when given."""
        found = dict(self.extras)
        if self.state is not None:
            found["state"] = self.state
        return found


@dataclass(frozen=True, slots=True)
class RunRow:
    """Where a run's history is: its partition, first and last applied offsets."""

    run_id: str
    partition: int
    first_offset: int
    last_offset: int
    status: str


@dataclass(frozen=True, slots=True)
class Archived:
    """A run's history as written to its archive and verified there."""

    run_id: str
    location: str
    records: int
    sha256: str
    #: the run's last offset the archive covers
    last_offset: int
    #: the ids of the tasks it dispatched (keys of its task messages)
    tasks: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Unswept:
    """An archived run whose blobs are not deleted yet, and what says its records are gone."""

    run_id: str
    partition: int
    first_offset: int
    #: the run's last offset its archive covers
    last_offset: int
    location: str
    #: whether the archiver deleted its records (SQLite)
    purged: bool
    #: the task queue's end offset per partition when the run was noted (JSON object)
    tasks_ends: str
    #: the ids of its tasks (JSON list), if noted as it was archived
    tasks: str | None = None


def trigger_kind_and_name(state: RunState) -> tuple[str, str | None]:
    """What started the run: a trigger's kind and name, else ``manual`` or ``parent``."""
    trigger = state.trigger
    if not trigger:
        return ("manual" if state.parent is None else "parent"), None
    kind = trigger.get("type")
    name = trigger.get("trigger")
    return (str(kind) if kind else "trigger"), (str(name) if name else None)


def _small(value: Any) -> tuple[bool, Any]:
    """``(kept, value)``: a JSON value kept in a row only when it is small."""
    if value is None:
        return True, None
    size = len(_codec.dumps(value))
    return (True, value) if size <= ROW_VALUE_LIMIT else (False, None)


def row_body(state: RunState) -> tuple[bytes, int | None]:
    """The row's JSON body (what a list shows besides the columns) and the output's size."""
    body: dict[str, Any] = {"omitted": []}
    for name in ("params", "input", "output", "trigger"):
        kept, value = _small(getattr(state, name))
        body[name] = value
        if not kept:
            body["omitted"].append(name)
    if state.parent is not None:
        body["parent"] = state.parent.model_dump()
    if state.traceparent:
        body["traceparent"] = state.traceparent
    output_size = None if state.output is None else len(_codec.dumps(state.output))
    return _codec.dumps(body), output_size


def summary_state(row: sqlite3.Row) -> RunState:
    """A run as its row tells it: everything but its tasks, transitions and timers."""
    body = _codec.loads(row["body"])
    parent = body.get("parent")
    # what the extensions' indexed values were read from (a state machine's state)
    extensions: dict[str, Any] = _codec.loads(row["extras"]) if row["extras"] else {}
    status = row["status"]
    if status in LIVE_STATUSES and status != RUN_RUNNING:  # a running run held before it starts
        extensions[SHOWN], status = status, RUN_RUNNING
    return RunState(
        run_id=row["run_id"],
        workflow=row["workflow"],
        version=row["version"],
        params=body.get("params") or {},
        input=body.get("input"),
        trigger=body.get("trigger"),
        parent=h.ParentRef(**parent) if parent else None,
        correlation_id=row["correlation_id"],
        traceparent=body.get("traceparent"),
        requested=True,
        status=status,
        output=body.get("output"),
        error=row["error"],
        failed_task=row["failed_task"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        extensions=extensions,
        events=row["events"],
        retries=row["retries"],
        parked=row["parked"],
    )


def row_complete(row: sqlite3.Row) -> bool:
    """Whether the row holds every value of the run (none was too large to keep)."""
    return not _codec.loads(row["body"]).get("omitted")


@dataclass(slots=True)
class Change:
    """A run's row as a batch of history records left it."""

    state: RunState
    partition: int
    first_offset: int
    last_offset: int
