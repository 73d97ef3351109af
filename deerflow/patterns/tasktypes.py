"""``DynamicTasks``: the registry of task types a dynamic-tasks node may generate.

A generated task spec is ``{"id": ..., "type": ..., "config": {...}, "depends_on": [...]}``.
Two types are built in:

``"python"``
    ``{"script": "process_source.py", "args": [...], "env": {...}, "timeout": 60}`` runs the
    script with this interpreter as a subprocess; its output is the JSON on the last line it
    prints. A relative path is looked up in the directory of the file that defines the
    workflow, then in the working directory. The script also gets ``DEERFLOW_RUN_ID``,
    ``DEERFLOW_TASK_ID``, ``DEERFLOW_IDEMPOTENCY_KEY`` and ``DEERFLOW_PARAMS`` (JSON).
``"callable"``
    ``{"function": "name", "args": [...], "kwargs": {...}}`` calls a function registered with
    :meth:`DynamicTasks.function`; it receives ``context=`` too if it has such a parameter.

More types come from :meth:`DynamicTasks.register`. Registrations are per process: do them at
import time of the workflow's module so every worker has them.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar, overload

import deerflow._codec as _codec
from deerflow.errors import DefinitionError, NonRetryableError
from deerflow.patterns._script import resolve_script, run_script
from deerflow.runtime import TaskContext

FnT = TypeVar("FnT", bound=Callable[..., Any])


@dataclass(frozen=True)
class TaskSpec:
    """One generated task as its handler sees it.

    Attributes:
        id: the spec's id (unique among the node's generated tasks).
        type: the task type.
        config: the spec's ``config``.
        search_path: directories to resolve relative file names against (the workflow file's
            directory, then the working directory).
    """

    id: str
    type: str
    config: Mapping[str, Any]
    search_path: tuple[Path, ...] = field(default=())


Handler = Callable[[TaskSpec, TaskContext], Any]
Validator = Callable[[Mapping[str, Any]], None]


@dataclass(frozen=True)
class TaskType:
    """A registered task type: ``handler(spec, context)`` runs it; ``validate(config)`` checks
    a spec's config when the specs are generated (raise ``ValueError`` saying what is wrong)."""

    name: str
    handler: Handler
    validate: Validator | None = None


class DynamicTasks:
    """The registry of task types for ``@workflow.dynamic_tasks``, and builders of task specs.

    Example::

        @DynamicTasks.function
        def count_rows(uri, context=None):
            ...

        @workflow.dynamic_tasks(id="process", depends_on=["discover"])
        def generate(context):
            return [DynamicTasks.python("a", "process_source.py", ["s3://a"]),
                    DynamicTasks.call("b", "count_rows", "s3://b")]

        @DynamicTasks.register("shell")
        async def run_shell(spec, context):
            ...
    """

    _types: ClassVar[dict[str, TaskType]] = {}
    _functions: ClassVar[dict[str, Callable[..., Any]]] = {}

    @classmethod
    def register(
        cls, name: str, handler: Handler | None = None, *, validate: Validator | None = None
    ) -> Any:
        """Register task type ``name`` (use as ``@DynamicTasks.register("name")`` or call).

        ``handler(spec: TaskSpec, context: TaskContext)`` returns the task's JSON output; sync
        handlers run in a thread, async ones on the loop.
        """
        if not name or not isinstance(name, str):
            raise DefinitionError(f"task type name must be a non-empty string, got {name!r}")

        def add(fn: Handler) -> Handler:
            cls._types[name] = TaskType(name, fn, validate)
            return fn

        return add if handler is None else add(handler)

    @classmethod
    def get(cls, name: str) -> TaskType:
        """The task type ``name``; :class:`NonRetryableError` listing the known ones if none."""
        try:
            return cls._types[name]
        except KeyError:
            raise NonRetryableError(
                f"unknown dynamic task type {name!r} (known: {', '.join(sorted(cls._types))})"
            ) from None

    @classmethod
    def types(cls) -> list[str]:
        """The registered task type names, sorted."""
        return sorted(cls._types)

    @overload
    @classmethod
    def function(cls, fn: FnT, *, name: str | None = None) -> FnT: ...

    @overload
    @classmethod
    def function(cls, fn: None = None, *, name: str | None = None) -> Callable[[FnT], FnT]: ...

    @classmethod
    def function(cls, fn: Callable[..., Any] | None = None, *, name: str | None = None) -> Any:
        """Register ``fn`` for ``"callable"`` specs under ``name`` (default: its ``__name__``)."""

        def add(f: FnT) -> FnT:
            cls._functions[name or f.__name__] = f
            return f

        return add if fn is None else add(fn)

    @classmethod
    def lookup_function(cls, name: str) -> Callable[..., Any]:
        """The function registered as ``name``."""
        try:
            return cls._functions[name]
        except KeyError:
            raise NonRetryableError(
                f"no function {name!r} is registered with "
                "DynamicTasks.function (known: "
                f"{', '.join(sorted(cls._functions)) or 'none'})"
            ) from None

    @staticmethod
    def python(
        id: str,
        script: str,
        args: Sequence[Any] = (),
        *,
        depends_on: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """A ``"python"`` spec running ``script`` with ``args``."""
        config: dict[str, Any] = {"script": script, "args": list(args)}
        if env:
            config["env"] = dict(env)
        if timeout is not None:
            config["timeout"] = timeout
        return _spec(id, "python", config, depends_on)

    @classmethod
    def call(
        cls,
        id: str,
        function: str | Callable[..., Any],
        *args: Any,
        depends_on: Sequence[str] = (),
        **kwargs: Any,
    ) -> dict[str, Any]:
        """A ``"callable"`` spec calling a registered function with JSON ``args``/``kwargs``."""
        name = function if isinstance(function, str) else _registered_name(cls, function)
        return _spec(
            id, "callable", {"function": name, "args": list(args), "kwargs": kwargs}, depends_on
        )


def _spec(
    task_id: str, kind: str, config: dict[str, Any], depends_on: Sequence[str]
) -> dict[str, Any]:
    spec: dict[str, Any] = {"id": task_id, "type": kind, "config": config}
    if depends_on:
        spec["depends_on"] = list(depends_on)
    return spec


def _registered_name(cls: type[DynamicTasks], fn: Callable[..., Any]) -> str:
    for name, registered in cls._functions.items():
        if registered is fn:
            return name
    raise DefinitionError(
        f"{getattr(fn, '__name__', fn)!r} is not registered: decorate it "
        "with @DynamicTasks.function so every worker can find it"
    )


# -- the built-in types -------------------------------------------------------------------------


def _validate_python(config: Mapping[str, Any]) -> None:
    if not isinstance(config.get("script"), str) or not config["script"]:
        raise ValueError("config.script must be the path of a Python script")
    args = config.get("args", [])
    if not isinstance(args, list) or any(isinstance(a, (dict, list)) for a in args):
        raise ValueError("config.args must be a list of strings or numbers")
    env = config.get("env", {})
    if not isinstance(env, dict):
        raise ValueError("config.env must be an object of strings")
    timeout = config.get("timeout")
    if timeout is not None and (not isinstance(timeout, (int, float)) or timeout <= 0):
        raise ValueError("config.timeout must be a positive number of seconds")


async def _run_python(spec: TaskSpec, context: TaskContext) -> Any:
    config = spec.config
    path = resolve_script(config["script"], spec.search_path, context.task_id)
    env = dict(os.environ)
    env.update({str(k): str(v) for k, v in config.get("env", {}).items()})
    env.update(
        DEERFLOW_RUN_ID=context.run_id,
        DEERFLOW_TASK_ID=context.task_id,
        DEERFLOW_IDEMPOTENCY_KEY=context.idempotency_key,
        DEERFLOW_PARAMS=_codec.dumps(context.params).decode(),
    )
    args = [str(a) for a in config.get("args", [])]
    return await run_script(
        path, args, task_id=context.task_id, env=env, seconds=config.get("timeout")
    )


def _validate_callable(config: Mapping[str, Any]) -> None:
    if not isinstance(config.get("function"), str):
        raise ValueError(
            "config.function must name a function registered with DynamicTasks.function"
        )
    DynamicTasks.lookup_function(config["function"])
    if not isinstance(config.get("args", []), list):
        raise ValueError("config.args must be a list")
    if not isinstance(config.get("kwargs", {}), dict):
        raise ValueError("config.kwargs must be an object")


async def _run_callable(spec: TaskSpec, context: TaskContext) -> Any:
    fn = DynamicTasks.lookup_function(spec.config["function"])
    args = list(spec.config.get("args", []))
    kwargs = dict(spec.config.get("kwargs", {}))
    if _takes_context(fn):
        kwargs["context"] = context
    if inspect.iscoroutinefunction(fn):
        return await fn(*args, **kwargs)
    return await asyncio.to_thread(fn, *args, **kwargs)  # copies contextvars: current_task


def _takes_context(fn: Callable[..., Any]) -> bool:
    try:
        return "context" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


DynamicTasks.register("python", _run_python, validate=_validate_python)
DynamicTasks.register("callable", _run_callable, validate=_validate_callable)
