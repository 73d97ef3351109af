"""Workflows known to a process, by name and version."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from deerflow.core.definition import WorkflowDef
from deerflow.errors import DefinitionError


class WorkflowRegistry:
    """Maps ``(name, version)`` to a definition; the newest registration is the default version.

    Keeping an old version registered next to a new one lets runs started on the old version
    finish on it.
    """

    def __init__(self, workflows: Iterable[WorkflowDef] = ()) -> None:
        self._by_key: dict[tuple[str, str], WorkflowDef] = {}
        self._latest: dict[str, WorkflowDef] = {}
        for wf in workflows:
            self.add(wf)

    def add(self, wf: WorkflowDef) -> WorkflowDef:
        """Register ``wf`` after validating it; the same object twice is a no-op."""
        key = (wf.name, wf.version)
        existing = self._by_key.get(key)
        if existing is wf:
            return wf
        if existing is not None and existing.fingerprint() != wf.fingerprint():
            raise DefinitionError(
                f"workflow {wf.name!r} version {wf.version!r} is registered twice with different"
                " tasks; give one of them another version"
            )
        wf.validate()
        self._by_key[key] = wf
        self._latest[wf.name] = wf
        for task in wf.tasks.values():
            for nested in task.kind.nested_workflows(task):
                self.add(nested)  # e.g. sub-workflows run wherever their parent runs
        return wf

    def get(self, name: str, version: str | None = None) -> WorkflowDef | None:
        """The definition for ``name`` at ``version`` (default: the newest), or ``None``."""
        if version is None:
            return self._latest.get(name)
        return self._by_key.get((name, version))

    def __contains__(self, name: object) -> bool:
        return name in self._latest

    def __iter__(self) -> Iterator[WorkflowDef]:
        return iter(self._latest.values())

    def __len__(self) -> int:
        return len(self._latest)
