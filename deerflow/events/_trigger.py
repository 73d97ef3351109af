"""The base of every trigger spec, its one-line validation errors, and trigger names."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    ModelWrapValidatorHandler,
    ValidationError,
    model_validator,
)

from deerflow.errors import DefinitionError

__all__ = ["EventTrigger", "spec_problem", "trigger_name"]

_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.\-]+")


class EventTrigger(BaseModel):
    """Base of every trigger spec: something outside that starts runs of a workflow.

    Attributes:
        name: a stable name for the trigger (``deerflow triggers replay NAME``, durable cursors);
            default ``<workflow>.<type>.<what>`` (see :func:`trigger_name`).
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True, extra="forbid")

    source: ClassVar[str] = "custom"
    name: str | None = None

    @model_validator(mode="wrap")
    @classmethod
    def _one_line_errors(cls, data: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        # A spec is written by hand in the user's file: say what is wrong with it in one
        # line, naming the valid options, instead of pydantic's multi-line report.
        try:
            return handler(data)
        except ValidationError as exc:
            raise DefinitionError(spec_problem(cls, exc)) from None

    def describe(self) -> str:
        """What the trigger listens to, for names and logs."""
        return self.source

    def listens_to(self) -> str:
        """What the trigger listens to, as the dashboard and ``GET /api/triggers`` show it
        (:meth:`describe` unless a trigger says more; never part of a name)."""
        return self.describe()

    def attached(self, workflow: str) -> None:
        """Check the spec as a trigger of ``workflow`` (``add_trigger`` calls it).

        Raises:
            DefinitionError: naming the workflow, for a spec that cannot work (default: none).
        """


def spec_problem(cls: type[BaseModel], exc: ValidationError) -> str:
    """``cls(...)``'s validation errors as one line naming the valid options."""
    problems: list[str] = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        where = ".".join(str(part) for part in error["loc"])
        if error["type"] == "extra_forbidden":
            options = ", ".join(sorted(cls.model_fields))
            problems.append(f"unknown option {where!r} (options: {options})")
        elif error["type"] == "missing":
            problems.append(f"{where!r} is required")
        else:
            problems.append(f"{where}: {error['msg'].removeprefix('Value error, ')}")
    return f"{cls.__name__}: {'; '.join(problems)}"


def trigger_name(workflow: str, trigger: EventTrigger) -> str:
    """The trigger's ``name``, else ``<workflow>.<what it listens to>``, URL-safe."""
    return trigger.name or _NAME_CHARS.sub("-", f"{workflow}.{trigger.describe()}")
