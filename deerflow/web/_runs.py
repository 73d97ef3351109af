"""What operators ask about runs and do to them, shared by the HTTP API, the dashboard and the CLI.

Everything here reads the engine's run index (a row per run, and a run's own history folded
when its detail is asked for) or the run's history, and acts only by appending history events
(cancel, retry), so it works the same in ``deerflow serve``, in a standalone ``deerflow ui``
and in a one-shot CLI command.
"""

from __future__ import annotations

import difflib
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import deerflow._codec as _codec
from deerflow.core import RunState
from deerflow.core import WorkflowDef as Workflow
from deerflow.core import history as h
from deerflow.core.state import RUN_FAILED, status_of, waits_of
from deerflow.engine import Engine
from deerflow.errors import DeerflowError, RunEnded, RunNotFound
from deerflow.events import trigger_name
from deerflow.payloads import size_text
from deerflow.runtime import RunResult
from deerflow.runtime.integration import RunQuery, run_result
from deerflow.web import _graph

#: Events of one run shown at most (the newest are kept); a page is not a log dump.
HISTORY_LIMIT = 2000


class ActionRefused(DeerflowError):
    """An operator action that does not apply to the run as it is (e.g. retrying a running run)."""


class UnknownRun(RunNotFound):
    """No run has that id; :attr:`public` says so without the store or other runs' ids.

    The CLI's user may see where it looked and the ids that come close; an HTTP client, who
    may be anyone holding a key, gets only :attr:`public`.
    """

    def __init__(self, message: str, *, public: str) -> None:
        super().__init__(message)
        self.public = public


class AmbiguousRunId(UnknownRun):
    """A run id prefix that more than one run's id starts with."""


def public_message(exc: RunNotFound, text: str) -> str:
    """What an HTTP answer says of a run that was not found: no store URL, no other run ids."""
    return exc.public if isinstance(exc, UnknownRun) else f"no run {text!r}"


#: Which runs to list (the run index's query; ``limit`` 100 by default).
RunFilter = RunQuery


def trigger_labels(state: RunState) -> tuple[str, ...]:
    """What started the run: its trigger's name and kind, or ``manual``."""
    trigger = state.trigger
    if not trigger:
        return ("manual",) if state.parent is None else ("parent",)
    named = tuple(str(v) for v in (trigger.get("trigger"), trigger.get("type")) if v)
    # ``engine.start(trigger=...)`` takes any mapping: one naming neither is a manual start.
    return named or ("manual",)


def trigger_label(state: RunState) -> str:
    """One short label for the trigger column."""
    return trigger_labels(state)[0]


def result_of(engine: Engine, state: RunState) -> RunResult:
    """The public view of a folded run, in definition order when the workflow is loaded."""
    return run_result(state, engine.registry.get(state.workflow, state.version))


async def list_runs(engine: Engine, where: RunFilter) -> list[RunState]:
    """Runs passing ``where``, newest first, as the run index's rows tell them (no tasks)."""
    await engine.index.sync()
    return await engine.index.summaries(where)


async def find_run(engine: Engine, text: str) -> RunState:
    """The run whose id is ``text`` or uniquely starts with it, folded from its history.

    Raises:
        RunNotFound: naming the store and the closest run ids, or the ambiguous matches.
    """
    await engine.index.sync()
    state = await engine.index.state(text) if text else None
    if state is not None:
        return state
    matches = await engine.index.ids_starting(text) if text else []
    shortest = min(matches, key=len) if matches else ""
    if matches and all(m.startswith(shortest) for m in matches):
        found = await engine.index.state(shortest)  # a run and its sub-workflow children
        if found is not None:
            return found
    if matches:
        shown = ", ".join(sorted(matches)[:5])
        raise AmbiguousRunId(
            f"run id {text!r} is ambiguous in {engine.log.url}: {shown}",
            public=f"run id {text!r} is ambiguous: give more of it",
        )
    near = await engine.index.ids_starting(text[:4], 500) if text else []
    close = difflib.get_close_matches(text, near, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UnknownRun(
        f"no run {text!r} in {engine.log.url} ({await engine.index.total()} runs there){hint}",
        public=f"no run {text!r}",
    )


async def child_runs(engine: Engine, run_id: str) -> dict[str, list[str]]:
    """Sub-workflow child runs of ``run_id`` by the parent task that started them."""
    found: dict[str, list[tuple[int, str]]] = {}
    for state in await engine.index.summaries(RunQuery(parent=run_id, limit=None)):
        parent = state.parent
        if parent is not None and parent.run_id == run_id:
            found.setdefault(parent.task_id, []).append((parent.attempt, state.run_id))
    return {task: [rid for _, rid in sorted(pairs)] for task, pairs in found.items()}


async def history(engine: Engine, run_id: str, limit: int = HISTORY_LIMIT) -> list[dict[str, Any]]:
    """The run's raw history events, oldest first, read from its history partition.

    Events are plain JSON (``type`` plus fields), so event types this process does not know,
    from newer pattern modules, are shown as they are. Each carries its ``offset``.
    """
    events: list[dict[str, Any]] = []
    for record in await engine.index.records(run_id):
        try:
            body = _codec.loads(record.value)
        except ValueError:
            body = {"type": "undecodable", "raw": record.value[:500].decode("utf-8", "replace")}
        if isinstance(body, dict) and body.get("run_id", run_id) == run_id:
            events.append({"offset": record.offset, **body})
    return events[-limit:]


def attempts(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per task, its attempts as the history tells them (scheduling, timing, worker, error)."""
    found: dict[str, dict[int, dict[str, Any]]] = {}
    for event in events:
        task_id, attempt = event.get("task_id"), event.get("attempt")
        if not isinstance(task_id, str) or not isinstance(attempt, int):
            continue
        row = found.setdefault(task_id, {}).setdefault(attempt, {"attempt": attempt})
        kind = event.get("type")
        if kind == "TaskScheduled":
            row.update(scheduled_at=event.get("ts"), fallback=event.get("fallback", False))
        elif kind in ("TaskCompleted", "TaskFailed") and "outcome" not in row:
            row.update(
                outcome="completed" if kind == "TaskCompleted" else "failed",
                started_at=event.get("started_at"),
                finished_at=event.get("ts"),
                worker=event.get("worker"),
                error=event.get("error"),
                error_type=event.get("error_type"),
                traceback=event.get("traceback"),
            )
    return {tid: [rows[n] for n in sorted(rows)] for tid, rows in found.items()}


@dataclass
class RunDetail:
    """Everything the run page and ``GET /api/runs/{id}`` show about one run."""

    state: RunState
    result: RunResult
    child_runs: dict[str, list[str]]
    events: list[dict[str, Any]]
    attempts: dict[str, list[dict[str, Any]]]
    graph: _graph.Graph
    workflow: Workflow | None
    #: where the run's history is archived, if it is
    archived: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The detail as the API returns it (history under its own endpoint)."""
        return {
            "run": self.result.model_dump(mode="json"),
            "trigger": trigger_label(self.state),
            "retries": self.state.retries,
            "child_runs": self.child_runs,
            "attempts": self.attempts,
            "graph": self.graph.as_json(),
            "workflow_loaded": self.workflow is not None,
            "archived": self.archived,
            "waits": waits_of(self.state),  # what its waiting nodes wait for, until when
        }


async def run_detail(engine: Engine, run_id: str) -> RunDetail:
    """The run ``run_id`` (or a unique prefix), its history, attempts and laid-out DAG."""
    state = await find_run(engine, run_id)
    events = await history(engine, state.run_id)
    wf = engine.registry.get(state.workflow, state.version)
    result = run_result(state, wf)
    children = await child_runs(engine, state.run_id)
    first: dict[str, float] = {}
    for event in events:
        if event.get("type") == "TaskScheduled" and event.get("task_id") not in first:
            first[str(event["task_id"])] = float(event.get("ts") or 0.0)
    graph = _graph.build(result, wf, children, first, state.shape, waits_of(state))
    archived = await engine.index.archived(state.run_id)
    return RunDetail(state, result, children, events, attempts(events), graph, wf, archived)


async def request_cancel(engine: Engine, run_id: str, reason: str = "cancelled") -> RunState:
    """Append a cancel request for a running run.

    Raises:
        RunNotFound: unknown run id.
        ActionRefused: the run has already ended.
    """
    state = await find_run(engine, run_id)
    if state.terminal:
        raise ActionRefused(f"run {state.run_id} already ended ({state.status}); nothing to cancel")
    await engine.cancel(state.run_id, reason=reason)
    return state


async def request_signal(
    engine: Engine, run_id: str, name: str, data: Any = None, signal_id: str | None = None
) -> tuple[str, str]:
    """Send the signal ``name`` to a running run; return its run id and the signal's id.

    Raises:
        RunNotFound: unknown run id.
        ActionRefused: the run has already ended.
    """
    state = await find_run(engine, run_id)
    if state.terminal:
        raise ActionRefused(
            f"run {state.run_id} has ended ({state.status}): it takes no more signals"
        )
    try:
        sid = await engine.signal(state.run_id, name, data, signal_id=signal_id)
    except RunEnded as exc:  # it ended meanwhile
        raise ActionRefused(str(exc)) from None
    return state.run_id, sid


async def request_retry(engine: Engine, run_id: str, reason: str = "retry requested") -> int:
    """Append ``RunRetryRequested``: a failed run goes on from its failed tasks.

    The request is numbered after the run's previous retries, so two operators clicking at
    once make one retry. Returns that number.

    Raises:
        RunNotFound: unknown run id.
        ActionRefused: the run is not failed (running, completed, cancelled or compensated),
            or it is archived.
    """
    state = await find_run(engine, run_id)
    if state.status != RUN_FAILED:
        raise ActionRefused(
            f"run {state.run_id} is {state.status}; only failed runs can be retried"
        )
    archived = await engine.index.archived(state.run_id)
    if archived is not None:
        raise ActionRefused(
            f"run {state.run_id} is archived ({archived}): its history left the live log, "
            "so it cannot be retried; start a new run with its input"
        )
    number = state.retries + 1
    await engine.append_history(
        [
            h.RunRetryRequested(
                id=h.event_id(state.run_id, "retry", number),
                run_id=state.run_id,
                retry=number,
                reason=reason,
            )
        ]
    )
    return number


_AGO = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_NUMBER = r"[0-9]+(?:\.[0-9]+)?"
#: The forms of a time the API takes, as its OpenAPI document states them (besides RFC 3339
#: ``date`` and ``date-time``): epoch seconds, or a duration ago.
EPOCH_PATTERN = f"^{_NUMBER}$"
AGO_PATTERN = f"^{_NUMBER}[smhd]$"
_RFC3339 = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"(?:[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:[Zz]|[+-][0-9]{2}:[0-9]{2}))?$"
)
_STRICT = re.compile(f"{EPOCH_PATTERN}|{AGO_PATTERN}")


def parse_time(text: str, now: float | None = None, *, strict: bool = False) -> float:
    """Epoch seconds from ``1732850000``, an ISO-8601 time (UTC if no zone) or ``15m`` ago.

    ``strict`` takes only the API's documented forms: epoch seconds, a duration ago, an
    RFC 3339 date-time (with its zone) or date, with no spaces around.

    Raises:
        ValueError: naming the text that is none of these.
    """
    if strict:
        if not (_STRICT.match(text) or _RFC3339.match(text)):
            raise ValueError(
                f"not a time: {text!r} (use epoch seconds, an RFC 3339 date-time or date, "
                "or 15m / 2h / 1d ago)"
            )
        text = text if _STRICT.match(text) else text.upper()  # RFC 3339 allows 't' and 'z'
    text = text.strip()
    ago = _AGO.match(text)
    if ago:
        return (time.time() if now is None else now) - float(ago[1]) * _UNITS[ago[2]]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"not a time: {text!r} (use epoch seconds, ISO-8601, or 15m / 2h / 1d ago)"
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def summary(state: RunState) -> dict[str, Any]:
    """One run as a list shows it."""
    return {
        "run_id": state.run_id,
        "workflow": state.workflow,
        "version": state.version,
        "status": status_of(state),
        "trigger": trigger_label(state),
        "started_at": state.started_at,
        "finished_at": state.finished_at,
        "error": state.error if state.status != "completed" else None,
        "failed_task": state.failed_task,
        "retries": state.retries,
        "parent_run_id": state.parent.run_id if state.parent else None,
    }


async def trigger_status(engine: Engine) -> list[dict[str, Any]]:
    """Each trigger: what it listens to, how many runs it started, its last event and delay.

    Triggers of loaded workflows come first; trigger names seen in the history but not loaded
    here (``deerflow ui`` without ``--app``) follow with ``loaded: false``.
    """
    seen: dict[str, dict[str, Any]] = {}
    await engine.index.sync()
    for name, runs, state in await engine.index.trigger_stats():
        received = (state.trigger or {}).get("received_at")
        started = state.started_at or 0.0
        seen[name] = {
            "runs": runs,
            "last_run_id": state.run_id,
            "last_run_at": started,
            "last_event_at": received,
            "last_delay_s": started - received if isinstance(received, float) else None,
        }
    empty = {
        "runs": 0,
        "last_run_id": None,
        "last_run_at": None,
        "last_event_at": None,
        "last_delay_s": None,
    }
    rows = []
    for wf in engine.registry:
        for trigger in wf.triggers:
            name = trigger_name(wf.name, trigger)
            rows.append(
                {
                    "name": name,
                    "workflow": wf.name,
                    "kind": trigger.source,
                    "listens_to": trigger.listens_to(),
                    "loaded": True,
                    **seen.pop(name, empty),
                }
            )
    rows.extend(
        {"name": name, "workflow": None, "kind": None, "listens_to": None, "loaded": False, **row}
        for name, row in sorted(seen.items())
    )
    return rows


def truncate(value: Any, limit: int = 2000) -> str:
    """``value`` as JSON text of at most ``limit`` characters (inputs and outputs can be huge),
    with the size of the whole when it is cut short."""
    try:
        raw = _codec.dumps(value)
    except TypeError:
        raw = repr(value).encode()
    text = raw.decode(errors="replace")
    return text if len(text) <= limit else f"{text[:limit]}… ({size_text(len(raw))} in all)"
