"""The one JSON codec: orjson, with datetimes, UUIDs, dataclasses and pydantic models."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS | orjson.OPT_UTC_Z

#: The deepest nesting of user data (task outputs, run params and input, trigger events)
#: deerflow stores. The log's own encoders stop near 254 levels and pydantic's JSON parser near
#: 200, and user data is wrapped a few levels deep in events and task messages; a value nested
#: deeper would be written and then be unreadable (a run that never moves again).
MAX_DEPTH = 100


def _default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def dumps(value: Any) -> bytes:
    """Encode ``value`` as JSON bytes; raises ``TypeError`` naming a type it cannot encode."""
    try:
        return orjson.dumps(value, default=_default, option=_OPTIONS)
    except orjson.JSONEncodeError as exc:
        raise TypeError(str(exc)) from exc


def loads(data: bytes | str) -> Any:
    """Decode JSON bytes or text."""
    return orjson.loads(data)


def to_json_value(value: Any) -> Any:
    """``value`` as plain JSON data (what a reader of the log will see)."""
    return orjson.loads(dumps(value))


def bounded_json_value(value: Any) -> Any:
    """:func:`to_json_value`, refusing values nested deeper than :data:`MAX_DEPTH` levels.

    Raises:
        TypeError: the value is not JSON-serialisable or nests too deeply.
    """
    try:
        result = to_json_value(value)
    except TypeError as exc:
        if "recursion" in str(exc).lower():
            raise TypeError(f"value nests deeper than {MAX_DEPTH} levels") from None
        raise
    if isinstance(result, dict | list) and _deeper_than(result, MAX_DEPTH):
        raise TypeError(f"value nests deeper than {MAX_DEPTH} levels")
    return result


def _deeper_than(value: dict[str, Any] | list[Any], limit: int) -> bool:
    """Whether plain JSON data nests more than ``limit`` containers deep (iterative)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False
