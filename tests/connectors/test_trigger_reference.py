"""docs/reference/triggers.md lists every option of every trigger, with the code's default."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from deerflow.events import EventTrigger

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "reference" / "triggers.md"
ROW = re.compile(r"^\| `(?P<option>[a-z_]+)` \| (?P<default>[^|]+?) \|", re.M)


def triggers(cls: type[EventTrigger] = EventTrigger) -> list[type[EventTrigger]]:
    """``cls`` and every trigger class derived from it."""
    found = [cls]
    for sub in cls.__subclasses__():
        found += triggers(sub)
    return found


def literal(value: Any) -> str:
    """A default as the reference writes it: a Python literal, strings in double quotes."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, tuple):
        items = [literal(v) for v in value]
        return f"({', '.join(items)}{',' if len(items) == 1 else ''})"
    return repr(value)


def documented(name: str) -> dict[str, str]:
    """Option -> default cell of the reference's table for trigger ``name``."""
    sections = re.split(r"^## ", REFERENCE.read_text(), flags=re.M)
    section = next((s for s in sections if s.startswith(f"`{name}`")), None)
    assert section is not None, f"{REFERENCE.name} has no section for {name}"
    return {m["option"]: m["default"].strip() for m in ROW.finditer(section)}


@pytest.mark.parametrize("trigger", triggers(), ids=lambda cls: cls.__name__)
def test_the_reference_lists_every_option_of_the_trigger_with_its_default(
    trigger: type[EventTrigger],
) -> None:
    rows = documented(trigger.__name__)
    fields = trigger.model_fields
    assert sorted(rows) == sorted(fields), f"{trigger.__name__}: options differ from the code's"
    for option, info in fields.items():
        expected = "required" if info.is_required() else f"`{literal(info.default)}`"
        assert rows[option] == expected, (trigger.__name__, option)


def test_the_defaults_render_as_python_literals() -> None:
    assert literal(("s3:ObjectCreated:*",)) == '("s3:ObjectCreated:*",)'
    assert literal("now") == '"now"' and literal(None) == "None" and literal(300.0) == "300.0"
