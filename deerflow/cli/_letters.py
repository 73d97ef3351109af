"""A dead letter as a reader wants it: where it came from, why, what it carried, and the
command that replays it."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import unquote_plus

import deerflow._codec as _codec
from deerflow.cli._base import store_flag
from deerflow.cli._live import when
from deerflow.web.operations import DeadLetterEntry

#: Body fields every letter has; what is left says what the letter carried.
_ENVELOPE = frozenset({"id", "reason", "source", "trigger", "at"})
MAX_CHARS = 4000


def origin(entry: DeadLetterEntry) -> str:
    """Where the letter's input came from, in one short phrase."""
    body = entry.body
    at = f"{body.get('topic')} partition {body.get('partition')} offset {body.get('offset')}"
    if entry.source == "kafka":
        return f"kafka {at}"
    if entry.source == "s3":
        s3 = (body.get("record") or {}).get("s3") or {}
        bucket, key = (s3.get("bucket") or {}).get("name"), (s3.get("object") or {}).get("key")
        if bucket and isinstance(key, str):
            return f"s3://{bucket}/{unquote_plus(key)}"  # keys arrive URL-encoded
        return f"sqs {body.get('queue')} message {body.get('message_id')}"
    if "path" in body:
        return f"webhook {body['path']}"
    if entry.source == "event_handler":
        return f"event at {at}"
    if entry.source == "worker":
        return f"task message on {body.get('topic')}"
    if "instance" in body:
        return f"instance {body['instance']}, transition {body.get('transition')!r}"
    return entry.source


def payload(entry: DeadLetterEntry) -> Any:
    """What the letter carried: the message, the notification, the event (decoded)."""
    body = entry.body
    if "value" in body:
        value = body["value"]
        if body.get("value_encoding") == "base64":
            raw = base64.b64decode(value)
            return raw.decode("utf-8", "replace")
        return value
    for name in ("body", "event"):
        if name in body:
            return body[name]
    return {k: v for k, v in body.items() if k not in _ENVELOPE}


def pretty(value: Any) -> str:
    """``value`` as indented JSON; a string that holds JSON, decoded first."""
    if isinstance(value, str):
        try:
            value = _codec.loads(value)
        except ValueError:
            return str(value)
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def replay_command(entry: DeadLetterEntry, store: str | None) -> str:
    """The command that replays ``entry``; with ``--app`` when replaying needs the definitions
    (an event handler runs again; a trigger's topic lives on the trigger's cluster)."""
    command = f"deerflow dlq replay {entry.ref}{store_flag(store)}"
    if entry.source == "event_handler" or entry.source == "kafka":
        command += " --app FILE.py"
    return command


def letter_text(entry: DeadLetterEntry, store: str | None, *, max_lines: int) -> list[str]:
    """The lines ``deerflow dlq show`` prints."""
    trigger = entry.body.get("trigger")
    lines = [
        f"dead letter {entry.ref}",
        f"  when     {when(entry.timestamp_ms / 1000)}",
        f"  source   {origin(entry)}",
    ]
    if trigger:
        lines.append(f"  trigger  {trigger}")
    lines.append(f"  reason   {entry.reason}")
    carried = payload(entry)
    size = len(carried.encode() if isinstance(carried, str) else _codec.dumps(carried))
    text = pretty(carried)
    shown = text[:MAX_CHARS].splitlines()[: max(0, max_lines)]
    cut = "\n".join(shown) != text
    lines.append(
        f"  payload  ({size:,} bytes"
        + (f"; the first {len(shown)} lines shown, --json for all)" if cut else ")")
    )
    lines.extend(f"    {line}" for line in shown)
    if entry.replayed_at is not None:
        lines.append(f"  replayed {when(entry.replayed_at)}")
    lines.append(f"  replay   {replay_command(entry, store)}")
    return lines
