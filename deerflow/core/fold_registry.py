"""The fold extensions registered in this process, and what they say about a run.

The table is one per process (a few extensions per feature: bounded by the code that
registers): a registered extension folds its events in every engine of the process, and
:func:`status_of`, :func:`result_fields`, :func:`waits_of` and the run-index filters read
every registered one's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from deerflow.core import history as h
from deerflow.core.fold_extension import FoldExtension, Wait
from deerflow.core.state import LIVE_STATUSES, RUN_RUNNING, TASK_DONE, RunState

#: what folds each added event type (a few per feature: bounded by the code that registers)
_EXTENDED: dict[str, FoldExtension] = {}
#: which extension reads each added RunState attribute; the extensions that fill result fields
_ATTRIBUTES: dict[str, FoldExtension] = {}
_RESULTS: dict[str, FoldExtension] = {}
_REQUESTS: dict[str, FoldExtension] = {}
#: which extension keeps each run-index filter (FoldExtension.indexed)
_INDEXED: dict[str, FoldExtension] = {}
_SHOWN: dict[str, FoldExtension] = {}
#: RunState's own attributes, which no extension may shadow
_FIELDS = frozenset(dir(RunState))


def register_fold(extension: FoldExtension) -> None:
    """Fold :meth:`~FoldExtension.types` with ``extension`` from now on (again: a no-op).

    Raises :class:`ValueError` when another extension, or the core, folds one of its types.
    """
    _check_clashes(extension)
    h.add_event_types(extension.event_classes, terminal=extension.terminal)
    for name in extension.types():
        _EXTENDED[name] = extension
    for name in extension.attributes:
        _ATTRIBUTES[name] = extension
        setattr(RunState, name, property(_reader(extension, name)))
    for name in extension.indexed:
        _INDEXED[name] = extension
    if type(extension).result_fields is not FoldExtension.result_fields:
        _RESULTS[extension.key] = extension
    if type(extension).request is not FoldExtension.request:
        _REQUESTS[extension.key] = extension
    if extension.live_statuses:
        _SHOWN[extension.key] = extension
        LIVE_STATUSES.update(extension.live_statuses)


def extension_of(event_type: str) -> FoldExtension | None:
    """The registered extension that folds events of ``event_type``, or ``None``."""
    return _EXTENDED.get(event_type)


def _check_clashes(extension: FoldExtension) -> None:
    """Raise :class:`ValueError` when ``extension`` would take what another (or the core) has."""
    types = extension.types()
    if not extension.key or not types:
        raise ValueError(f"{type(extension).__name__}: a fold extension needs a key and types")
    clash = sorted(
        t for t in types if h.is_core_type(t) or _EXTENDED.get(t, extension) is not extension
    )
    if clash:
        raise ValueError(f"fold extension {extension.key!r}: {clash} already folded elsewhere")
    taken = sorted(
        name
        for name in extension.attributes
        if name in _FIELDS or _ATTRIBUTES.get(name, extension) is not extension
    )
    if taken:
        raise ValueError(f"fold extension {extension.key!r}: attributes {taken} already exist")
    filters = sorted(n for n in extension.indexed if _INDEXED.get(n, extension) is not extension)
    if filters:
        raise ValueError(f"fold extension {extension.key!r}: filters {filters} already exist")


def request_takers() -> list[FoldExtension]:
    """The registered extensions whose runs take requests (``Engine.send``)."""
    return list(_REQUESTS.values())


def indexed_filters() -> dict[str, tuple[str, str]]:
    """The run-index filters the registered extensions keep: name -> (extension key, key of
    its part)."""
    return {name: (e.key, e.indexed[name]) for name, e in _INDEXED.items()}


def indexed_values(state: RunState) -> dict[str, dict[str, Any]]:
    """What the run index keeps of ``state``'s extension parts: extension key -> the
    :attr:`FoldExtension.indexed` keys of its part that are set."""
    kept: dict[str, dict[str, Any]] = {}
    for key, field_ in indexed_filters().values():
        value = state.extensions.get(key, {}).get(field_)
        if value is not None:
            kept.setdefault(key, {})[field_] = value
    return kept


def _reader(extension: FoldExtension, name: str) -> Callable[[RunState], Any]:
    def read(state: RunState) -> Any:
        return extension.attribute(state, name)

    return read


#: where a run rebuilt from a summary (a run index row) keeps the status its row showed
SHOWN = "shown_status"


def status_of(state: RunState) -> str:
    """The run's status as shown: a running run an extension holds before it starts shows
    that extension's status (``queued`` at its flow-control gate), else ``state.status``."""
    if state.status == RUN_RUNNING and _SHOWN:
        summary = state.extensions.get(SHOWN)
        if summary is not None:
            return str(summary)
        for extension in _SHOWN.values():
            shown = extension.shown_status(state)
            if shown is not None:
                return shown
    return state.status


def result_fields(state: RunState) -> dict[str, Any]:
    """What the registered fold extensions add to ``state``'s public result."""
    fields: dict[str, Any] = {}
    for extension in _RESULTS.values():
        fields.update(extension.result_fields(state))
    return fields


def waits_of(state: RunState) -> dict[str, Wait]:
    """What the run's waiting nodes wait for and until when, by task id in the run's order.

    Every registered :class:`FoldExtension` tells its own (:meth:`FoldExtension.waits`); an
    ended run, or a node that ended, waits for nothing whatever its extension kept.
    """
    if state.terminal:
        return {}
    found: dict[str, Wait] = {}
    for extension in {id(e): e for e in _EXTENDED.values()}.values():
        found.update(extension.waits(state))
    return {
        tid: found[tid]
        for tid, task in state.tasks.items()
        if tid in found and task.status not in TASK_DONE
    }
