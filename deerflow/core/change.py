"""How the loaded definition differs from the one a run started on (pure).

A run records its definition's fingerprint and shape (task ids and dependencies) in its
``RunRequested``. When the process that owns the run has a different definition under the same
name and version, the run is *parked*: the decider does nothing for it (no task is re-run, none
is skipped, no effect repeats) and :func:`definition_change` says what changed, so the
operator can load the version the run started on (it then goes on by itself) or cancel it.
Changing a workflow with runs in flight is done by bumping ``Workflow(version=...)`` and
keeping the old version registered until its runs end.
"""

from __future__ import annotations

from deerflow.core.definition import WorkflowDef
from deerflow.core.state import RunState

PARKED = "parked"


def definition_change(wf: WorkflowDef, state: RunState) -> str | None:
    """Why ``state`` cannot go on under ``wf`` (what changed), or ``None`` if it can."""
    if state.version != wf.version:
        return (
            f"run was started on version {state.version!r} of workflow {wf.name!r} but "
            f"version {wf.version!r} is loaded; keep the old version registered"
        )
    if not state.fingerprint or state.fingerprint == wf.fingerprint():
        return None
    detail = (
        _shape_change(state.shape, wf.shape())
        if state.shape is not None
        else (_touched_change(wf, state))
    )
    return (
        f"workflow {wf.name!r} version {wf.version!r} changed under a running run "
        f"({detail}); the run is parked until that definition is loaded again. Bump "
        "Workflow(version=...) to change a workflow with runs in flight"
    )


def _shape_change(old: dict[str, list[str]], new: dict[str, list[str]]) -> str:
    removed = [t for t in old if t not in new]
    added = [t for t in new if t not in old]
    parts = []
    if removed:
        parts.append(f"tasks {removed} removed")
    if added:
        parts.append(f"tasks {added} added")
    for task in old:
        if task in new and sorted(old[task]) != sorted(new[task]):
            parts.append(f"task {task!r} now depends on {new[task]} instead of {old[task]}")
    return "; ".join(parts) or "task kinds or compensations changed"


def _touched_change(wf: WorkflowDef, state: RunState) -> str:
    """For runs recorded without a shape: what the run's own tasks tell."""
    unknown = sorted(
        tid for tid in state.tasks if tid not in wf.tasks and "/" not in tid and "@" not in tid
    )
    return f"tasks {unknown} no longer exist" if unknown else "tasks or dependencies changed"
