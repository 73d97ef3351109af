"""Structured logs: JSON lines carrying the run id and task id of the code that logged.

``deerflow --log-json serve app.py`` (or ``DEERFLOW_LOG_FORMAT=json``) makes every log line one
JSON object. Lines logged while a task body runs (the user's ``logging`` calls included, in the
task's thread too) carry ``run_id``, ``task_id``, ``attempt`` and ``workflow``, so a log store
can show everything one run did. Plain text logs get the same ids as a ``[run/task]`` prefix.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import deerflow._codec as _codec
from deerflow.runtime.integration import current_task

__all__ = [
    "FORMAT_ENV",
    "LEVELS",
    "LIBRARIES",
    "JsonFormatter",
    "RunContextFilter",
    "configure_logging",
    "quiet_libraries",
]

FORMAT_ENV = "DEERFLOW_LOG_FORMAT"
_FIELDS = ("run_id", "task_id", "attempt", "workflow")


class RunContextFilter(logging.Filter):
    """Adds the current task's ids to each record (an explicit ``extra=`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Annotate ``record``; never drops it."""
        task = current_task.get(None)
        if task is not None:
            for name in _FIELDS:
                if not hasattr(record, name):
                    setattr(record, name, getattr(task, name, None))
        ids = [str(getattr(record, n)) for n in ("run_id", "task_id") if hasattr(record, n)]
        record.run_context = f" [{'/'.join(ids)}]" if ids else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, run ids, exception."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line."""
        body: dict[str, Any] = {
            "ts": record.created,
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in _FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                body[name] = value
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        return _codec.dumps(body).decode()


LEVELS = ("debug", "info", "warning", "error")
# The libraries deerflow drives log their own progress (group joins, offsets, HTTP requests) at
# INFO: below --log-level debug only deerflow's lines (and the user's) are shown. Failures that
# matter reach deerflow as exceptions and are logged once, in its own words.
LIBRARIES = ("aiokafka", "kafka", "botocore", "boto3", "s3transfer", "urllib3", "aiohttp")


def configure_logging(*, json_format: bool | None = None, level: int | str = logging.INFO) -> None:
    """Log to stderr, as JSON lines when ``json_format`` (default: ``DEERFLOW_LOG_FORMAT=json``,
    or JSON already configured, e.g. by ``deerflow --log-json``).

    ``level`` is a :mod:`logging` level or one of :data:`LEVELS`; the :data:`LIBRARIES`' own
    lines show only at ``debug``.
    """
    root = logging.getLogger()
    if json_format is None:
        json_format = os.environ.get(FORMAT_ENV, "").lower() == "json" or any(
            isinstance(h.formatter, JsonFormatter) for h in root.handlers
        )
    number = level if isinstance(level, int) else _level_number(level)
    handler = logging.StreamHandler()
    handler.addFilter(RunContextFilter())
    handler.setFormatter(
        JsonFormatter()
        if json_format
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s%(run_context)s %(message)s")
    )
    root.handlers[:] = [handler]
    root.setLevel(number)
    quiet_libraries(number > logging.DEBUG)


def quiet_libraries(quiet: bool = True) -> None:
    """Silence the :data:`LIBRARIES`' own log lines (``quiet``), or let them through again.

    A command that fails says why in its one line; a library's line about the same failure
    (aiokafka's "Unable connect to ...") would only repeat it in other words.
    """
    level = logging.CRITICAL + 1 if quiet else logging.NOTSET
    for name in LIBRARIES:
        logging.getLogger(name).setLevel(level)


def _level_number(name: str) -> int:
    if name.lower() not in LEVELS:
        raise ValueError(f"unknown log level {name!r} (use one of {', '.join(LEVELS)})")
    return int(getattr(logging, name.upper()))
