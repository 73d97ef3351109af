"""Workflow composition: whole workflows as the nodes of a new one, wired by name.

::

    composed = compose_workflows(
        name="full_pipeline",
        workflows=[
            {"workflow": "extraction_workflow", "alias": "extract"},
            {"workflow": "transformation_workflow", "alias": "transform",
             "depends_on": ["extract"]},
        ],
        connections={"transform.input": "extract.output"},
    )

Each entry becomes a sub-workflow node named by its ``alias`` (default: the workflow's name)
that runs the workflow as a child run. ``"workflow"`` is a :class:`deerflow.Workflow` or a
name, looked up in ``registry=`` (a mapping of names, an iterable of workflows, or anything
with ``get(name)``) and then among every workflow defined in this process (the one defined
last under that name). ``connections`` maps ``"<alias>.input"`` to ``"<alias>.output"``: the
target's child run gets exactly the source's output as ``context.input`` (and depends on it).
Without a connection a node's input is its dependencies' output (a dict by alias for several),
or the composed run's input when it has none. Entries may be listed in any order; everything
is checked here, and a :class:`deerflow.DefinitionError` names the bad alias or connection.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import deerflow.workflow._catalog as _catalog
from deerflow.core import RetryOptions
from deerflow.core.definition import check_acyclic
from deerflow.core.taskdef import ID_PATTERN
from deerflow.errors import DefinitionError
from deerflow.patterns.subworkflow import add_sub_workflow
from deerflow.workflow._definition import Workflow

ENTRY_KEYS = frozenset({"workflow", "alias", "depends_on", "retries", "retry_delay", "backoff"})


def compose_workflows(
    name: str,
    workflows: Iterable[Mapping[str, Any]],
    connections: Mapping[str, str] | None = None,
    *,
    registry: Any = None,
    version: str = "1",
    description: str = "",
    max_parallel: int | None = None,
) -> Workflow:
    """A workflow whose nodes are child runs of other workflows (see the module docstring).

    Args:
        name: the composed workflow's name.
        workflows: entries ``{"workflow": name or Workflow, "alias": ..., "depends_on": [...]}``
            (optional ``retries``, ``retry_delay``, ``backoff`` per entry).
        connections: ``{"<alias>.input": "<alias>.output"}``.
        registry: where names are looked up first.
        version, description, max_parallel: as for :class:`deerflow.Workflow`.
    """

    composed = Workflow(name, version=version, description=description, max_parallel=max_parallel)
    where = f"compose_workflows({name!r})"
    entries = _entries(where, list(workflows), registry)
    inputs = _connections(where, connections or {}, entries)
    deps = {
        alias: [*e["depends_on"], *([inputs[alias]] if alias in inputs else [])]
        for alias, e in entries.items()
    }
    check_acyclic(name, deps)
    for alias in _topological(deps):
        entry = entries[alias]
        add_sub_workflow(
            composed,
            alias,
            entry["workflow"],
            dict.fromkeys(deps[alias]),
            input_from=inputs.get(alias),
            retry=RetryOptions(
                entry.get("retries", 0), entry.get("retry_delay", 1.0), entry.get("backoff", 2.0)
            ),
        )
    composed.validate()
    return composed


def _entries(where: str, raw: list[Mapping[str, Any]], registry: Any) -> dict[str, dict[str, Any]]:
    if not raw:
        raise DefinitionError(f"{where}: workflows= is empty")
    entries: dict[str, dict[str, Any]] = {}
    for position, item in enumerate(raw):
        entry = _entry(where, position, item, registry)
        if entry["alias"] in entries:
            raise DefinitionError(f"{where}: duplicate alias {entry['alias']!r}")
        entries[entry["alias"]] = entry
    for alias, entry in entries.items():
        for dep in entry["depends_on"]:
            if dep not in entries:
                raise DefinitionError(
                    f"{where}: alias {alias!r} depends on unknown alias "
                    f"{dep!r} (aliases: {', '.join(entries)})"
                )
    return entries


def _entry(where: str, position: int, item: Any, registry: Any) -> dict[str, Any]:
    if not isinstance(item, Mapping) or "workflow" not in item:
        raise DefinitionError(f"{where}: entry #{position} must be an object with 'workflow'")
    unknown = sorted(set(item) - ENTRY_KEYS)
    if unknown:
        raise DefinitionError(f"{where}: entry #{position} has unknown keys {unknown}")
    wf = resolve(where, item["workflow"], registry)
    alias = item.get("alias") or wf.name
    if not isinstance(alias, str) or not ID_PATTERN.match(alias):
        raise DefinitionError(f"{where}: invalid alias {alias!r} (letters, digits, '_', '-', '.')")
    depends_on = item.get("depends_on", [])
    if isinstance(depends_on, str):
        raise DefinitionError(f"{where}: alias {alias!r}: depends_on must be a list")
    return {**item, "workflow": wf, "alias": alias, "depends_on": list(depends_on)}


def resolve(where: str, ref: Any, registry: Any) -> Workflow:
    """``ref`` as a workflow: itself, or the workflow of that name (registry, then catalog)."""

    if isinstance(ref, Workflow):
        return ref
    if not isinstance(ref, str):
        raise DefinitionError(f"{where}: 'workflow' must be a name or a Workflow, got {ref!r}")
    found = _from_registry(registry, ref) or _catalog.lookup(ref)
    if found is None:
        known = sorted({*_registry_names(registry), *_catalog.known_names()})
        raise DefinitionError(
            f"{where}: no workflow named {ref!r} is defined (known: {', '.join(known) or 'none'})"
        )
    return found


def _from_registry(registry: Any, name: str) -> Workflow | None:
    if registry is None:
        return None
    if isinstance(registry, Mapping) or hasattr(registry, "get"):
        found: Workflow | None = registry.get(name)
        return found
    return next((wf for wf in registry if wf.name == name), None)


def _registry_names(registry: Any) -> list[str]:
    if registry is None:
        return []
    if isinstance(registry, Mapping):
        return [str(k) for k in registry]
    return [wf.name for wf in registry]


def _connections(
    where: str, connections: Mapping[str, str], entries: Mapping[str, Any]
) -> dict[str, str]:
    inputs: dict[str, str] = {}
    for target, source in connections.items():
        shown = f"connection {target!r}: {source!r}"
        t_alias, t_port = _port(where, shown, target, entries)
        s_alias, s_port = _port(where, shown, source, entries)
        if t_port != "input" or s_port != "output":
            raise DefinitionError(f"{where}: {shown}: connect '<alias>.input' to '<alias>.output'")
        if t_alias == s_alias:
            raise DefinitionError(f"{where}: {shown}: an alias cannot feed itself")
        if t_alias in inputs:
            raise DefinitionError(
                f"{where}: {shown}: {t_alias!r}.input is already connected "
                f"to {inputs[t_alias]!r}.output"
            )
        inputs[t_alias] = s_alias
    return inputs


def _port(where: str, shown: str, ref: Any, entries: Mapping[str, Any]) -> tuple[str, str]:
    alias, dot, port = ref.rpartition(".") if isinstance(ref, str) else ("", "", "")
    if not dot:
        raise DefinitionError(
            f"{where}: {shown}: {ref!r} is not '<alias>.input' or '<alias>.output'"
        )
    if alias not in entries:
        raise DefinitionError(
            f"{where}: {shown}: unknown alias {alias!r} (aliases: {', '.join(entries)})"
        )
    return alias, port


def _topological(deps: Mapping[str, list[str]]) -> list[str]:
    """Aliases, each after its dependencies, otherwise in the order given (already acyclic)."""
    placed: dict[str, None] = {}

    def place(alias: str) -> None:
        if alias not in placed:
            for dep in deps[alias]:
                place(dep)
            placed[alias] = None

    for alias in deps:
        place(alias)
    return list(placed)
