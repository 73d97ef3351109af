"""What the states of many runs hold in common, held once: interned names, shared shapes.

A process holds many runs of few workflows, each for as long as it runs (or waits): their
names, task ids and DAG shapes are the same from run to run.
"""

from __future__ import annotations

import sys

from deerflow.core.state import RunState

#: the DAG shape of each definition recent runs were requested with, by fingerprint: the runs
#: of one definition share one (read-only) shape rather than each keeping its decoded copy
_SHAPES: dict[str, dict[str, list[str]]] = {}
_SHAPES_LIMIT = 256


def shared_shape(
    fingerprint: str, shape: dict[str, list[str]] | None
) -> dict[str, list[str]] | None:
    """The one copy of ``shape`` kept for the definition of ``fingerprint`` (``shape`` itself
    when it is the first, or differs from the one kept; the last :data:`_SHAPES_LIMIT`
    definitions are kept)."""
    if shape is None or not fingerprint:
        return shape
    known = _SHAPES.get(fingerprint)
    if known == shape:
        return known
    _SHAPES[fingerprint] = shape
    while len(_SHAPES) > _SHAPES_LIMIT:
        del _SHAPES[next(iter(_SHAPES))]
    return shape


def shared(state: RunState) -> RunState:
    """``state`` holding what it has in common with other runs once (a run restored from a
    snapshot decodes its own copies): interned names and task ids, a shared shape."""
    state.workflow = sys.intern(state.workflow)
    state.version = sys.intern(state.version)
    state.fingerprint = sys.intern(state.fingerprint)
    state.shape = shared_shape(state.fingerprint, state.shape)
    state.tasks = {sys.intern(task_id): task for task_id, task in state.tasks.items()}
    return state
