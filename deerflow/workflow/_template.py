"""Parameterized workflow templates: one definition, many workflows with typed parameters.

::

    template = WorkflowTemplate(name="pipeline", parameters={
        "source_type": {"type": "string", "enum": ["s3", "gcs", "azure"]},
        "parallelism": {"type": "integer", "default": 5, "minimum": 1},
    })

    @template.task(id="extract")
    def extract(context):
        return read(context.params["source_type"])

    s3_pipeline = template.instantiate(name="s3_pipeline", parameters={"source_type": "s3"})

The parameter schema (see :mod:`deerflow.workflow._schema` for every key) becomes a strict
pydantic model. ``instantiate`` validates the parameters, fills in defaults and returns a new
:class:`deerflow.Workflow` with the template's tasks; every run of it sees the parameters in
``context.params``, under the run's own params (a run param of the same name wins).
Invalid parameters raise :class:`TemplateParameterError` (a :class:`deerflow.DefinitionError`)
naming the parameter and the rule it breaks.

The template records its decorators (``task``, ``parallel_tasks``, ``dynamic_tasks``,
``map_reduce``, ``sub_workflow``, ``add``) and checks each at once on a prototype, so a
dependency loop fails where it is written; a dependency on a task never declared fails at
``instantiate``, when the definition is complete.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeVar

from pydantic import ValidationError

import deerflow.workflow._catalog as _catalog
from deerflow.core import TaskDef
from deerflow.errors import DefinitionError
from deerflow.workflow._definition import Workflow
from deerflow.workflow._schema import RULES, parameters_model

F = TypeVar("F", bound=Callable[..., Any])


class TemplateParameterError(DefinitionError):
    """Parameters given to :meth:`WorkflowTemplate.instantiate` break the template's schema.

    Attributes:
        parameter: the first offending parameter.
        rule: the schema rule it breaks (``required``, ``enum``, ``type``, ``minimum``, ...).
        problems: every ``(parameter, rule, message)`` found.
    """

    def __init__(
        self, message: str, *, parameter: str, rule: str, problems: list[tuple[str, str, str]]
    ) -> None:
        super().__init__(message)
        self.parameter = parameter
        self.rule = rule
        self.problems = problems


@dataclass(frozen=True)
class _Step:
    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    target: Any = None  # the decorated function or class; None for immediate steps

    def apply(self, wf: Workflow) -> None:
        result = getattr(wf, self.method)(*self.args, **self.kwargs)
        if self.target is not None:
            result(self.target)


class WorkflowTemplate:
    """A workflow definition with typed parameters; ``instantiate`` makes workflows of it.

    Args:
        name: the template's name (used in error messages).
        parameters: parameter name -> schema (``type``, ``enum``, ``default``, ``required``,
            ``description``, ``minimum``/``maximum``, ``minLength``/``maxLength``,
            ``pattern``, ...).
        version, description, max_parallel: passed to every instantiated workflow.
    """

    def __init__(
        self,
        name: str,
        parameters: Mapping[str, Any] | None = None,
        *,
        version: str = "1",
        description: str = "",
        max_parallel: int | None = None,
    ) -> None:

        self.name = name
        self.version = version
        self.description = description
        self.max_parallel = max_parallel
        self._schema = {k: dict(v) for k, v in (parameters or {}).items()}
        self.model = parameters_model(name, self._schema)
        self._steps: list[_Step] = []
        self._prototype = Workflow(name, version=version, max_parallel=max_parallel)
        _catalog.forget(self._prototype)  # a template is not a workflow compose can name

    @property
    def parameters(self) -> Mapping[str, Any]:
        """The parameter schema as given."""
        return MappingProxyType(self._schema)

    def validate(self, parameters: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The parameters with defaults filled in; :class:`TemplateParameterError` if invalid."""
        try:
            model = self.model.model_validate(dict(parameters or {}))
        except ValidationError as exc:
            raise self._error(exc) from None
        return model.model_dump(mode="json")

    def instantiate(
        self,
        name: str,
        parameters: Mapping[str, Any] | None = None,
        *,
        version: str | None = None,
        description: str | None = None,
    ) -> Workflow:
        """A new workflow named ``name`` whose runs see ``parameters`` in ``context.params``."""

        values = self.validate(parameters)
        wf = Workflow(
            name,
            version=version or self.version,
            description=self.description if description is None else description,
            max_parallel=self.max_parallel,
        )
        for step in self._steps:
            step.apply(wf)
        wf.validate()
        wf.default_params = MappingProxyType(values)
        return wf

    # -- recorded definition ---------------------------------------------------------------------

    def task(self, id: str | None = None, **options: Any) -> Callable[[F], F]:
        """Like :meth:`deerflow.Workflow.task`; the task is part of every instantiated workflow."""
        return self._decorator("task", (id,), options)

    def parallel_tasks(self, id: str, **options: Any) -> Callable[[F], F]:
        """Like :meth:`deerflow.Workflow.parallel_tasks`."""
        return self._decorator("parallel_tasks", (id,), options)

    def dynamic_tasks(self, id: str, **options: Any) -> Callable[[F], F]:
        """Like :meth:`deerflow.Workflow.dynamic_tasks`."""
        return self._decorator("dynamic_tasks", (id,), options)

    def map_reduce(self, id: str, **options: Any) -> Callable[[F], F]:
        """Like :meth:`deerflow.Workflow.map_reduce`."""
        return self._decorator("map_reduce", (id,), options)

    def sub_workflow(self, id: str, **options: Any) -> Callable[[F], F]:
        """Like :meth:`deerflow.Workflow.sub_workflow` (added at once, stackable)."""
        self._immediate(_Step("sub_workflow", (id,), options))

        def passthrough(fn: F) -> F:
            return fn

        return passthrough

    def add(self, node: Any) -> TaskDef:
        """Like :meth:`deerflow.Workflow.add`."""
        return self._immediate(_Step("add", (node,), {}))

    def _decorator(
        self, method: str, args: tuple[Any, ...], options: dict[str, Any]
    ) -> Callable[[F], F]:
        def register(target: F) -> F:
            self._immediate(_Step(method, args, options, target))
            return target

        return register

    def _immediate(self, step: _Step) -> TaskDef:
        step.apply(self._prototype)  # raises DefinitionError where the template is written
        self._steps.append(step)
        return self._prototype.tasks[list(self._prototype.tasks)[-1]]

    def _error(self, exc: ValidationError) -> TemplateParameterError:
        problems: list[tuple[str, str, str]] = []
        for err in exc.errors():
            param = str(err["loc"][0]) if err["loc"] else "?"
            rule = RULES.get(err["type"], "type" if err["type"].endswith("_type") else err["type"])
            if rule == "unknown":
                message = f"not a parameter of this template ({', '.join(self._schema)})"
            else:
                shown = "" if rule == "required" else f" (got {err.get('input')!r})"
                message = f"{err['msg']}{shown}"
            problems.append((param, rule, message))
        text = "; ".join(
            f"parameter {p!r} breaks {r}: {m}"
            if r != "unknown"
            else f"parameter {p!r} is unknown: {m}"
            for p, r, m in problems
        )
        return TemplateParameterError(
            f"template {self.name!r}: {text}",
            parameter=problems[0][0],
            rule=problems[0][1],
            problems=problems,
        )

    def __repr__(self) -> str:
        return f"WorkflowTemplate(name={self.name!r}, parameters={list(self._schema)})"
