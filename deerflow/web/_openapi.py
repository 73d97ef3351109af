"""The OpenAPI 3.1 document of the JSON API, served at ``/api/openapi.json``.

Built from small helpers rather than written out in full, so each operation reads as one line
of intent. A test checks that every route of the API is described here and nothing more.
"""

from __future__ import annotations

from typing import Any

from deerflow import __version__
from deerflow.web import _runs

_JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _ok(schema: dict[str, Any], status: str = "200", what: str = "OK") -> dict[str, Any]:
    return {status: {"description": what, "content": {_JSON: {"schema": schema}}}}


def _errors(*codes: tuple[str, str]) -> dict[str, Any]:
    return {
        code: {"description": what, "content": {_JSON: {"schema": _ref("Error")}}}
        for code, what in codes
    }


_ERRORS = _errors(
    ("400", "bad parameter"),
    ("401", "missing or invalid API key"),
    ("404", "unknown run, dead letter or schedule"),
    ("405", "method not allowed on this path"),
    ("409", "the action does not apply (a backfill: one runs, or a reversed or too wide range)"),
    ("429", "too many requests in progress; retry after the Retry-After seconds"),
    ("503", "the server is starting or cannot reach its store; retry later"),
)
_BODY_ERRORS = _errors(
    ("408", "the body was not received in time"),
    ("413", "the body is over the limit (64 KiB)"),
)


def _path(name: str, text: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "description": text,
    }


_RUN_ID = _path("run_id", "A run id, or a unique prefix of one.")


def _query(name: str, text: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema or {"type": "string"},
        "description": text,
    }


_LIMIT = {"type": "integer", "minimum": 0}
_SCHEDULE = _path("name", "A schedule's name (its trigger name).")
_SCHEDULE_CHANGE = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "paused": {"type": "boolean"},
        "changed": {"type": "boolean", "description": "false: it was so already"},
    },
}
#: The forms ``since`` and ``until`` take (``_runs.parse_time(strict=True)``).
_TIME = {
    "anyOf": [
        {"type": "string", "pattern": _runs.EPOCH_PATTERN, "description": "epoch seconds"},
        {"type": "string", "pattern": _runs.AGO_PATTERN, "description": "ago: 15m, 2h, 1d"},
        {"type": "string", "format": "date-time", "description": "RFC 3339, with its zone"},
        {"type": "string", "format": "date", "description": "a day, from 00:00 UTC"},
    ]
}


def _op(
    summary: str,
    responses: dict[str, Any],
    *,
    params: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    body_required: bool = False,
    op_id: str,
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "operationId": op_id,
        "parameters": params or [],
        "responses": {**responses, **_ERRORS},
    }
    if body is not None:
        op["requestBody"] = {"required": body_required, "content": {_JSON: {"schema": body}}}
        op["responses"].update(_BODY_ERRORS)
    return op


_OBJ: dict[str, Any] = {"type": "object", "additionalProperties": True}
_REASON = {
    "type": "object",
    "properties": {"reason": {"type": "string", "description": "Recorded with the request."}},
}

_SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
    "RunSummary": {
        "type": "object",
        "required": ["run_id", "workflow", "status"],
        "properties": {
            "run_id": {"type": "string"},
            "workflow": {"type": "string"},
            "version": {"type": "string"},
            "status": {
                "type": "string",
                "examples": ["running", "completed", "failed", "cancelled"],
            },
            "trigger": {"type": "string"},
            "started_at": {"type": ["number", "null"]},
            "finished_at": {"type": ["number", "null"]},
            "error": {"type": ["string", "null"]},
            "failed_task": {"type": ["string", "null"]},
            "retries": {"type": "integer"},
            "parent_run_id": {"type": ["string", "null"]},
        },
    },
    "RunDetail": {
        "type": "object",
        "required": ["run", "graph"],
        "properties": {
            "run": {
                **_OBJ,
                "description": "The RunResult: status, output, error and every task "
                "(children of expanded nodes as node/child).",
            },
            "trigger": {"type": "string"},
            "retries": {"type": "integer"},
            "child_runs": {
                "type": "object",
                "description": "Sub-workflow child runs by task.",
                "additionalProperties": {"type": "array", "items": {"type": "string"}},
            },
            "attempts": {
                "type": "object",
                "description": "Per task, its attempts from the history.",
                "additionalProperties": {"type": "array", "items": _OBJ},
            },
            "graph": {**_OBJ, "description": "Nodes laid out by topological layer, and edges."},
            "workflow_loaded": {"type": "boolean"},
            "archived": {
                "type": ["string", "null"],
                "description": "Where the run's history is archived (file:// or s3://), "
                "if it is; its history is then read back from there.",
            },
            "waits": {
                "type": "object",
                "description": "Per waiting node, what it waits for (`for`: a signal, an "
                "event and the values it must match, an object, a time) and its `deadline` "
                "(epoch seconds, or null).",
                "additionalProperties": {
                    "type": "object",
                    "required": ["for", "deadline"],
                    "properties": {
                        "for": {"type": "string"},
                        "deadline": {"type": ["number", "null"]},
                    },
                },
            },
        },
    },
    "Schedule": {
        "type": "object",
        "required": ["name", "workflow", "when", "paused"],
        "properties": {
            "name": {"type": "string"},
            "workflow": {"type": "string"},
            "when": {"type": "string", "examples": ["cron 0 * * * * (Europe/Paris)", "every 5m"]},
            "catchup": {"type": "string", "enum": ["skip", "latest", "all"]},
            "paused": {"type": "boolean"},
            "last_tick": {
                "type": ["string", "null"],
                "description": "The newest tick handled (ISO-8601, the schedule's zone).",
            },
            "next_tick": {
                "type": ["string", "null"],
                "description": "The next tick; null while paused or once ended.",
            },
        },
    },
    "Accepted": {
        "type": "object",
        "properties": {
            "run_id": {"type": "string"},
            "action": {"type": "string"},
            "retry": {"type": "integer"},
            "ref": {"type": "string"},
            "done": {"type": "string"},
            "signal": {"type": "string"},
            "signal_id": {"type": "string"},
        },
    },
}


def document() -> dict[str, Any]:
    """The OpenAPI document."""
    runs_filter = [
        _query("workflow", "Only this workflow."),
        _query("status", "Only this status."),
        _query("trigger", "Only runs started by this trigger (name or kind)."),
        _query("since", "Started at or after: epoch seconds, RFC 3339, or 15m/2h/1d ago.", _TIME),
        _query("until", "Started at or before (same forms).", _TIME),
        _query("limit", "At most this many (default 100).", _LIMIT),
        _query("parent", "Only sub-workflow runs this run started."),
        _query("after", "The next page: runs listed after this run id (the previous `next`)."),
    ]
    array = {"type": "array", "items": _OBJ}
    paths = {
        "/api/runs": {
            "get": _op(
                "List runs, newest first",
                _ok(
                    {
                        "type": "object",
                        "properties": {
                            "runs": {"type": "array", "items": _ref("RunSummary")},
                            "next": {
                                "type": ["string", "null"],
                                "description": "`after` for the next page; null on the last",
                            },
                        },
                    }
                ),
                params=runs_filter,
                op_id="listRuns",
            )
        },
        "/api/runs/{run_id}": {
            "get": _op(
                "One run: tasks, attempts, DAG, child runs",
                _ok(_ref("RunDetail")),
                params=[_RUN_ID],
                op_id="getRun",
            )
        },
        "/api/runs/{run_id}/history": {
            "get": _op(
                "The run's raw history events, oldest first",
                _ok(
                    {
                        "type": "object",
                        "properties": {"run_id": {"type": "string"}, "events": array},
                    }
                ),
                params=[_RUN_ID, _query("limit", "The newest N events.", _LIMIT)],
                op_id="getRunHistory",
            )
        },
        "/api/runs/{run_id}/cancel": {
            "post": _op(
                "Cancel a running run",
                _ok(_ref("Accepted"), "202", "cancel requested"),
                params=[_RUN_ID],
                body=_REASON,
                op_id="cancelRun",
            )
        },
        "/api/runs/{run_id}/retry": {
            "post": _op(
                "Retry a failed run from its failed tasks",
                _ok(_ref("Accepted"), "202", "retry requested"),
                params=[_RUN_ID],
                body=_REASON,
                op_id="retryRun",
            )
        },
        "/api/runs/{run_id}/signals/{name}": {
            "post": _op(
                "Send a signal to a running run (a wait_for_signal node takes its data)",
                {
                    **_ok(_ref("Accepted"), "202", "signal sent"),
                    **_errors(("422", "the body or the name is not what a signal carries")),
                },
                params=[
                    _RUN_ID,
                    {
                        "name": "name",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "minLength": 1, "maxLength": 200},
                        "description": "The signal's name.",
                    },
                ],
                body={
                    "type": "object",
                    "properties": {
                        "data": {"description": "Any JSON: the waiting node's output."},
                        "signal_id": {
                            "type": "string",
                            "minLength": 1,
                            "description": "Makes a retried request deliver the signal once.",
                        },
                    },
                },
                op_id="sendSignal",
            )
        },
        "/api/runs/{run_id}/transitions": {
            "post": _op(
                "Send a state-machine transition (501 unless state machines are loaded)",
                {
                    **_ok(_OBJ, "202", "transition sent"),
                    **_errors(("501", "no state-machine support is loaded")),
                },
                params=[_RUN_ID],
                body={
                    "type": "object",
                    "required": ["transition"],
                    "properties": {
                        "transition": {"type": "string", "minLength": 1},
                        "data": {**_OBJ, "description": "Sent with the transition."},
                    },
                },
                body_required=True,
                op_id="sendTransition",
            )
        },
        "/api/workflows": {
            "get": _op(
                "Workflows loaded in this process",
                _ok({"type": "object", "properties": {"workflows": array}}),
                op_id="listWorkflows",
            )
        },
        "/api/triggers": {
            "get": _op(
                "Triggers: runs started, last event, delay",
                _ok({"type": "object", "properties": {"triggers": array}}),
                op_id="listTriggers",
            )
        },
        "/api/dlq": {
            "get": _op(
                "Dead letters, newest first",
                _ok({"type": "object", "properties": {"dead_letters": array}}),
                params=[_query("limit", "At most this many (default 500).", _LIMIT)],
                op_id="listDeadLetters",
            )
        },
        "/api/dlq/{ref}/replay": {
            "post": _op(
                "Replay a dead letter (PARTITION:OFFSET)",
                _ok(_ref("Accepted"), "202", "replayed"),
                params=[
                    {
                        "name": "ref",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "pattern": "^[0-9]+:[0-9]+$"},
                    }
                ],
                op_id="replayDeadLetter",
            )
        },
        "/api/schedules": {
            "get": _op(
                "Schedules with their state, last and next tick",
                _ok(
                    {
                        "type": "object",
                        "properties": {"schedules": {"type": "array", "items": _ref("Schedule")}},
                    }
                ),
                op_id="listSchedules",
            )
        },
        **{
            f"/api/schedules/{{name}}/{action}": {
                "post": _op(
                    summary, _ok(_SCHEDULE_CHANGE), params=[_SCHEDULE], op_id=f"{action}Schedule"
                )
            }
            for action, summary in (
                ("pause", "Pause a schedule (kept across restarts)"),
                ("resume", "Resume a schedule: ticks from now on run"),
            )
        },
        "/api/schedules/{name}/backfill": {
            "post": _op(
                "Run a schedule's ticks between two times in the background (those that ran "
                "are skipped)",
                _ok(
                    {
                        "type": "object",
                        "properties": {
                            "schedule": {"type": "string"},
                            "ticks": {"type": "integer"},
                            "run_ids": {"type": "array", "items": {"type": "string"}},
                        },
                    },
                    "202",
                    "backfill started",
                ),
                params=[_SCHEDULE],
                body={
                    "type": "object",
                    "required": ["from", "to"],
                    "properties": {
                        "from": {
                            "type": "string",
                            "format": "date-time",
                            "description": "The first tick (ISO-8601).",
                        },
                        "to": {
                            "type": "string",
                            "format": "date-time",
                            "description": "The last tick, included.",
                        },
                        "max_parallel": {"type": "integer", "minimum": 1, "maximum": 100},
                    },
                },
                body_required=True,
                op_id="backfillSchedule",
            )
        },
        "/api/openapi.json": {
            "get": {
                "summary": "This document",
                "operationId": "openapi",
                "security": [],
                "responses": _ok(_OBJ),
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "deerflow API",
            "version": __version__,
            "description": "Runs, their histories and the actions on them. With API keys "
            "configured (DEERFLOW_API_KEYS), send one as X-API-Key or a bearer token.",
        },
        "paths": paths,
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "bearer": {"type": "http", "scheme": "bearer"},
            },
        },
        "security": [{"apiKey": []}, {"bearer": []}],
    }
