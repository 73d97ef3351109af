"""Template parameters: a small JSON-schema dialect turned into a pydantic model.

Each parameter is ``{"type": ..., ...}`` with these keys:

``type``
    ``string``, ``integer``, ``number``, ``boolean``, ``array`` or ``object`` (required).
``enum``
    the allowed values.
``default``
    the value when none is given; it must itself be valid.
``required``
    ``True``/``False``. Default: required unless it has a ``default``; an optional parameter
    without a default is ``None`` when not given.
``description``
    free text (shown in errors and by ``WorkflowTemplate.parameters``).
``minimum``, ``maximum``, ``exclusiveMinimum``, ``exclusiveMaximum``
    bounds for ``integer`` and ``number``.
``minLength``, ``maxLength``, ``pattern``
    for ``string`` (``pattern`` is a regular expression searched in the value).
``minItems``, ``maxItems``, ``items``
    for ``array``; ``items`` is ``{"type": ...}`` for the elements.

Values are checked strictly: ``"5"`` is not an integer and ``1`` is not a boolean.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from deerflow.errors import DefinitionError

TYPES: dict[str, Any] = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": bool,
    "array": list,
    "object": dict,
}
KEYS = frozenset(
    {
        "type",
        "enum",
        "default",
        "required",
        "description",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minLength",
        "maxLength",
        "pattern",
        "minItems",
        "maxItems",
        "items",
    }
)
_CONSTRAINTS = {
    "minimum": "ge",
    "maximum": "le",
    "exclusiveMinimum": "gt",
    "exclusiveMaximum": "lt",
    "minLength": "min_length",
    "maxLength": "max_length",
    "pattern": "pattern",
    "minItems": "min_length",
    "maxItems": "max_length",
}
# pydantic error types -> the schema rule a user wrote
RULES = {
    "missing": "required",
    "literal_error": "enum",
    "extra_forbidden": "unknown",
    "greater_than_equal": "minimum",
    "less_than_equal": "maximum",
    "greater_than": "exclusiveMinimum",
    "less_than": "exclusiveMaximum",
    "string_too_short": "minLength",
    "string_too_long": "maxLength",
    "string_pattern_mismatch": "pattern",
    "too_short": "minItems",
    "too_long": "maxItems",
}


def _annotation(where: str, schema: Mapping[str, Any]) -> Any:
    kind = schema.get("type")
    if kind not in TYPES:
        raise DefinitionError(f"{where}: 'type' must be one of {', '.join(TYPES)}, got {kind!r}")
    if "enum" in schema:
        values = schema["enum"]
        if not isinstance(values, list) or not values:
            raise DefinitionError(f"{where}: 'enum' must be a non-empty list")
        return Literal[tuple(values)]
    if kind == "array" and "items" in schema:
        return list[_annotation(f"{where} items", schema["items"])]  # type: ignore[misc]
    if kind == "number":
        return float | int  # strict float refuses nothing numeric, but keep ints as ints
    return TYPES[kind]


def field_for(where: str, schema: Any) -> tuple[Any, Any]:
    """The ``(annotation, FieldInfo)`` pair of one parameter."""
    if not isinstance(schema, Mapping):
        raise DefinitionError(
            f"{where}: a parameter is described by an object like {{'type': 'string'}}"
        )
    unknown = sorted(set(schema) - KEYS)
    if unknown:
        raise DefinitionError(f"{where}: unknown keys {unknown} (known: {', '.join(sorted(KEYS))})")
    annotation = _annotation(where, schema)
    required = schema.get("required", "default" not in schema)
    constraints = {_CONSTRAINTS[k]: v for k, v in schema.items() if k in _CONSTRAINTS}
    if required:
        return annotation, Field(..., description=schema.get("description"), **constraints)
    return annotation | None, Field(
        schema.get("default"), description=schema.get("description"), **constraints
    )


def parameters_model(name: str, parameters: Mapping[str, Any]) -> type[BaseModel]:
    """A strict pydantic model of ``parameters``; a bad schema or default is a DefinitionError."""
    fields: dict[str, Any] = {}
    for param, schema in parameters.items():
        if not isinstance(param, str) or not param.isidentifier():
            raise DefinitionError(
                f"template {name!r}: parameter name {param!r} must be an identifier"
            )
        fields[param] = field_for(f"template {name!r}, parameter {param!r}", schema)
    config = ConfigDict(strict=True, extra="forbid")
    model: type[BaseModel] = create_model(f"{name}_parameters", __config__=config, **fields)
    for param, schema in parameters.items():
        if "default" in schema:
            _check_default(name, model, param, schema["default"])
    return model


def _check_default(name: str, model: type[BaseModel], param: str, default: Any) -> None:
    try:
        model.__pydantic_validator__.validate_assignment(model.model_construct(), param, default)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise DefinitionError(
            f"template {name!r}, parameter {param!r}: default {default!r} "
            f"breaks {RULES.get(first['type'], first['type'])}: "
            f"{first['msg']}"
        ) from None
