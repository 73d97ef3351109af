"""Load workflow definitions from a user's Python file (``app.py`` or ``app.py:workflow``)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from deerflow._userfile._tracebacks import as_python_shows
from deerflow.errors import DeerflowError
from deerflow.workflow import Workflow


def _import_file(path: Path) -> ModuleType:
    """Run the user's file as a module; its errors as Python shows them for that file."""
    module_name = f"deerflow_user_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise DeerflowError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    sys.path.insert(0, str(path.resolve().parent))
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        if isinstance(exc, DeerflowError):
            raise  # a definition error names its workflow and task, to be read alone
        raise DeerflowError(f"cannot load {path}:\n{as_python_shows(exc)}") from None
    return module


def load_module_workflows(target: str) -> tuple[list[Workflow], Workflow | None]:
    """Import ``FILE[:NAME]``; return every workflow defined in it and the one ``NAME`` picks.

    ``NAME`` is a variable name in the file or a workflow's ``name``. Without it, the chosen
    workflow is the only one in the file (or ``None`` if there are several).
    """
    path_text, _, name = target.partition(":")
    path = Path(path_text)
    if not path.is_file():
        raise DeerflowError(f"no such file: {path}")
    module = _import_file(path)
    found: dict[int, tuple[str, Workflow]] = {}
    for var, value in vars(module).items():
        if isinstance(value, Workflow) and id(value) not in found:
            found[id(value)] = (var, value)
    workflows = [wf for _, wf in found.values()]
    if not workflows:
        raise DeerflowError(f"{path} defines no Workflow")
    if name:
        for var, wf in found.values():
            if name in (var, wf.name):
                return workflows, wf
        names = ", ".join(sorted(wf.name for wf in workflows))
        raise DeerflowError(f"{path} has no workflow {name!r} (it has: {names})")
    return workflows, workflows[0] if len(workflows) == 1 else None
