"""A generic codec for dataclass trees, and the fingerprint of their schema.

Run states are dataclasses holding dicts, lists, sets, deques, tuples, pydantic models
(history events, parent references) and JSON values. :func:`encode` turns such a tree into JSON
bytes field by field; :func:`decode` rebuilds it from the field types the dataclasses declare.
Nothing here names a field: a new field, or a JSON-able dict of feature state, needs no change.

:func:`schema_fingerprint` hashes the field names and types of every dataclass and model
reachable from a type. Bytes encoded under one fingerprint are only decoded under the same one
(the caller checks): a field renamed or retyped makes old bytes incompatible, not wrong.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import types
import typing
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, TypeAdapter

__all__ = ["CodecError", "decode", "encode", "from_json", "schema_fingerprint"]

T = TypeVar("T")


class CodecError(ValueError):
    """A value that cannot be encoded, or bytes that do not decode to the type asked for."""


def _default(value: Any) -> Any:
    """What orjson does not encode itself: sets and deques as lists, models as JSON."""
    if isinstance(value, set | frozenset | deque):
        return list(value)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"{type(value).__name__} is not JSON-able")


def encode(value: Any) -> bytes:
    """``value`` (a dataclass tree, or JSON-able data holding some) as JSON bytes:
    dataclasses as objects of their fields, sets and deques as arrays, pydantic models as
    their JSON form. Raises :class:`CodecError` if it is not JSON-able (a task output of a
    type JSON has no form for). orjson walks the dataclasses itself: no copy is made."""
    try:
        return orjson.dumps(value, default=_default)
    except TypeError as exc:
        raise CodecError(f"cannot encode {type(value).__name__}: {exc}") from exc


def decode(data: bytes, tp: type[T]) -> T:
    """Rebuild a ``tp`` from :func:`encode`'s bytes; raises :class:`CodecError` if they do not
    fit."""
    try:
        return typing.cast(T, from_json(orjson.loads(data), tp))
    except CodecError:
        raise
    except (orjson.JSONDecodeError, TypeError, ValueError, KeyError) as exc:
        raise CodecError(f"not an encoded {getattr(tp, '__name__', tp)}: {exc}") from exc


def from_json(data: Any, tp: Any) -> Any:
    """The value of type ``tp`` whose :func:`encode` form, parsed, is ``data``."""
    return _decoder(tp)(data)


Decoder = Callable[[Any], Any]


@functools.cache
def _decoder(tp: Any) -> Decoder:
    """A function from parsed :func:`encode` data to a ``tp``, made once per type."""
    if tp is Any or tp is object:
        return _same
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return _union_decoder(tp)
    if origin is not None:
        return _generic_decoder(tp, origin)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _dataclass_decoder(tp)
    if tp in (str, int, bool, float, type(None)):
        return functools.partial(_primitive, tp=tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp.model_validate
    return _adapter(tp).validate_python


def _same(data: Any) -> Any:
    return data


def _union_decoder(tp: Any) -> Decoder:
    options = typing.get_args(tp)
    real = [o for o in options if o is not type(None)]
    if len(real) != 1:
        return _adapter(tp).validate_python
    inner = _decoder(real[0])
    if type(None) not in options:
        return inner
    return lambda data: None if data is None else inner(data)


def _generic_decoder(tp: Any, origin: Any) -> Decoder:
    args = typing.get_args(tp)
    if origin is dict:
        value = _decoder(args[1]) if args else _same
        return lambda data: {k: value(v) for k, v in _expect(data, dict).items()}
    if origin in (list, set, frozenset, deque):
        item = _decoder(args[0]) if args else _same
        return lambda data: origin(map(item, _expect(data, list)))
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            each = _decoder(args[0])
            return lambda data: tuple(map(each, _expect(data, list)))
        parts = [_decoder(a) for a in args]
        return lambda data: tuple(d(v) for d, v in zip(parts, _expect(data, list), strict=True))
    return _adapter(tp).validate_python


def _dataclass_decoder(tp: type) -> Decoder:
    hints = _hints(tp)
    names = [f.name for f in dataclasses.fields(tp)]
    # Field decoders are looked up at first use: a dataclass may refer to itself.
    fields: dict[str, Decoder] = {}

    def decode_fields(data: Any) -> Any:
        given = _expect(data, dict)
        if not fields:
            fields.update({name: _decoder(hints[name]) for name in names})
        return tp(**{name: fields[name](given[name]) for name in names if name in given})

    return decode_fields


def _primitive(data: Any, tp: type) -> Any:
    if tp is float and isinstance(data, int) and not isinstance(data, bool):
        return float(data)
    if data is not None and (not isinstance(data, tp) or (tp is int and isinstance(data, bool))):
        raise CodecError(f"expected {tp.__name__}, got {type(data).__name__}")
    return data


def _expect(data: Any, kind: type[T]) -> T:
    if not isinstance(data, kind):
        raise CodecError(f"expected {kind.__name__}, got {type(data).__name__}")
    return data


@functools.cache
def _hints(tp: type) -> dict[str, Any]:
    return typing.get_type_hints(tp)


@functools.cache
def _adapter(tp: Any) -> TypeAdapter[Any]:
    return TypeAdapter(tp)


@functools.cache
def schema_fingerprint(tp: type) -> str:
    """A short hash of the field names and types of every dataclass and pydantic model
    reachable from ``tp``: equal fingerprints, compatible bytes."""
    seen: dict[str, str] = {}
    _describe(tp, seen)
    text = "\n".join(f"{name}: {body}" for name, body in sorted(seen.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _describe(tp: Any, seen: dict[str, str]) -> str:
    """Name ``tp``, adding the structure of each dataclass or model it reaches to ``seen``."""
    args = typing.get_args(tp)
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return repr(tp)
    if origin is not None or args:
        inner = ", ".join(_describe(a, seen) for a in args)
        return f"{getattr(origin, '__name__', repr(origin))}[{inner}]"
    name = f"{getattr(tp, '__module__', '')}.{getattr(tp, '__qualname__', repr(tp))}"
    if name in seen:
        return name
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        seen[name] = ""  # a placeholder breaks cycles
        hints = _hints(tp)
        seen[name] = ", ".join(
            f"{f.name}: {_describe(hints[f.name], seen)}" for f in dataclasses.fields(tp)
        )
    elif isinstance(tp, type) and issubclass(tp, BaseModel):
        seen[name] = ""
        seen[name] = ", ".join(
            f"{field}: {_describe(info.annotation, seen)}"
            for field, info in tp.model_fields.items()
        )
    return name
