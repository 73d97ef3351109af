"""Every defined workflow by name, so ``compose_workflows`` can name its parts.

``Workflow(...)`` records itself here. References are weak: a workflow nothing else holds
disappears from the catalog, so tests and notebooks that define many workflows leak nothing.
When several live workflows share a name, the one defined last is found.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deerflow.workflow._definition import Workflow

_by_name: weakref.WeakValueDictionary[str, Workflow] = weakref.WeakValueDictionary()


def remember(wf: Workflow) -> None:
    """Record ``wf`` under its name (called by ``Workflow.__init__``)."""
    _by_name[wf.name] = wf


def lookup(name: str) -> Workflow | None:
    """The live workflow defined last under ``name``, or ``None``."""
    return _by_name.get(name)


def known_names() -> list[str]:
    """Names of the live workflows, sorted (for error messages)."""
    return sorted(_by_name.keys())


def forget(wf: Workflow) -> None:
    """Remove ``wf`` (a template's prototype is not a workflow to compose)."""
    if _by_name.get(wf.name) is wf:
        del _by_name[wf.name]
