"""A node kind defined here adds a history event of its own and folds it, with no change to
deerflow: the event is decided, written, read back by any reader of the history, folded into
the run's state, and what the fold kept is what later attempts of the node see.

``audited`` nodes note every attempt in the run's history (``AttemptNoted``) as it is
scheduled; the fold keeps the notes of the run in ``state.extensions["audit"]``, and each
attempt sees the notes so far.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, Literal

import pytest

from deerflow import DefinitionError, Engine, Workflow
from deerflow.core import NodeKind, RetryPolicy, TaskDef, WorkflowDef
from deerflow.core import history as h
from deerflow.core.state import FoldExtension, RunState, fold_all, register_fold
from deerflow.runtime.plugins import FoldsPlugin, default_plugins
from deerflow.workflow import DEFAULT_PLUGINS
from tests.engine.test_custom_kind import run_history


class AttemptNoted(h.HistoryEvent):
    """An attempt of an audited node was scheduled."""

    type: Literal["AttemptNoted"] = "AttemptNoted"
    task_id: str
    attempt: int


class AuditFold(FoldExtension):
    key = "audit"
    event_classes = (AttemptNoted,)
    attributes = frozenset({"audit_notes"})

    def attribute(self, state: RunState, name: str) -> Any:
        return list(state.extensions.get(self.key, {}).get("notes", []))

    def fold(self, state: RunState, event: h.HistoryEvent) -> bool:
        assert isinstance(event, AttemptNoted)
        notes = self.part(state).setdefault("notes", [])
        notes.append(f"{event.task_id}#{event.attempt}")
        return True


AUDIT = AuditFold()


class AuditedKind(NodeKind):
    name = "audited"
    label = "audited task"
    folds = (AUDIT,)

    def on_scheduled(
        self, task: TaskDef, state: RunState, attempt: int, now: float
    ) -> list[h.HistoryEvent]:
        return [
            AttemptNoted(
                id=h.event_id(state.run_id, task.id, attempt, "noted"),
                run_id=state.run_id,
                ts=now,
                task_id=task.id,
                attempt=attempt,
            )
        ]

    def inputs(
        self, wf: WorkflowDef, state: RunState, task: TaskDef
    ) -> tuple[Iterable[str], dict[str, Any]]:
        notes = list(state.extensions.get("audit", {}).get("notes", []))
        return wf.ancestors(task.id), {"notes": notes}


AUDITED = AuditedKind()


def flaky_then_fine(context: Any) -> list[str]:
    if context.attempt == 1:
        raise RuntimeError("first attempt fails")
    return list(context.extra["notes"])


def audited() -> Workflow:
    wf = Workflow(name="audited")
    wf.add_task(TaskDef(id="first", fn=lambda context: list(context.extra["notes"]), kind=AUDITED))
    wf.add_task(
        TaskDef(
            id="second",
            fn=flaky_then_fine,
            depends_on=("first",),
            kind=AUDITED,
            retry=RetryPolicy(retries=1, retry_delay=0.01),
        )
    )
    return wf


async def test_a_kind_s_own_history_event_is_written_read_back_and_folded(store):
    wf = audited()
    async with Engine(store, [wf]) as engine:
        result = await (await engine.start(wf)).result(timeout=60)
        history = await run_history(engine, result.run_id)
    assert result.status == "completed", result.error
    # Each attempt saw the notes the fold had kept when it was scheduled, its own included.
    assert result.tasks["first"].output == ["first#1"]
    assert result.output == ["first#1", "second#1", "second#2"]
    # Read back as the kind's own class, whatever process reads the history.
    noted = [e for e in history if isinstance(e, AttemptNoted)]
    assert len(noted) == sum(e.type == "AttemptNoted" for e in history)
    assert [(e.task_id, e.attempt) for e in noted] == [("first", 1), ("second", 1), ("second", 2)]
    # Any reader of the history folds it the same way: the run's state holds the kind's part.
    state = fold_all(result.run_id, history)
    assert state.status == "completed"
    assert state.extensions == {"audit": {"notes": ["first#1", "second#1", "second#2"]}}
    # The extension's part reads as an attribute of the run state, under the name it chose.
    assert state.audit_notes == ["first#1", "second#1", "second#2"]
    with pytest.raises(AttributeError, match="no attribute 'audit_note'"):
        _ = state.audit_note
    # Folding a repeated event changes nothing, as for the core's events.
    assert fold_all(result.run_id, [*history, *noted]).extensions == state.extensions


class Clashing(h.HistoryEvent):
    type: Literal["TaskCompleted"] = "TaskCompleted"


class ClashingFold(FoldExtension):
    key = "clash"
    event_classes = (Clashing,)


class ClashingKind(NodeKind):
    name = "clashing"
    folds = (ClashingFold(),)


def test_a_kind_whose_event_reuses_a_core_type_is_refused_at_definition():
    wf = Workflow(name="clash")
    with pytest.raises(DefinitionError, match=r"'TaskCompleted'.* already folded elsewhere"):
        wf.add_task(TaskDef(id="a", fn=lambda context: 1, kind=ClashingKind()))
    assert "a" not in wf.tasks


class Shadowed(h.HistoryEvent):
    type: Literal["Shadowed"] = "Shadowed"


class ShadowingFold(FoldExtension):
    key = "shadow"
    event_classes = (Shadowed,)
    attributes = frozenset({"status"})


def test_an_extension_attribute_that_would_shadow_the_run_state_s_own_is_refused():
    with pytest.raises(ValueError, match=r"attributes \['status'\] already exist"):
        register_fold(ShadowingFold())
    assert RunState(run_id="r").status == "running"


class Bookmarked(h.HistoryEvent):
    """Someone bookmarked a run (an event no node kind decides: appended from outside)."""

    type: Literal["Bookmarked"] = "Bookmarked"
    label: str


class BookmarkFold(FoldExtension):
    key = "bookmarks"
    event_classes = (Bookmarked,)
    attributes = frozenset({"bookmarks"})

    def attribute(self, state: RunState, name: str) -> Any:
        return list(state.extensions.get(self.key, {}).get("labels", []))

    def fold(self, state: RunState, event: h.HistoryEvent) -> bool:
        assert isinstance(event, Bookmarked)
        self.part(state).setdefault("labels", []).append(event.label)
        return True

    def result_fields(self, state: RunState) -> dict[str, Any]:
        return {"bookmarks": self.attribute(state, "bookmarks")}


async def test_a_plugin_brings_its_fold_to_the_engines_adopting_it():
    bookmarked = Bookmarked(id="b1", run_id="r", label="later")
    # Nothing registered it: the history event is no known type yet.
    with pytest.raises(ValueError):
        h.decode(h.message("history", bookmarked).value)
    wf = Workflow(name="held")
    release = asyncio.Event()

    @wf.task()
    async def hold(context: Any) -> str:
        await release.wait()
        return "done"

    async with Engine("memory://", [wf], plugins=[FoldsPlugin(BookmarkFold())]) as engine:
        handle = await engine.start(wf)
        await engine.append_history(
            [Bookmarked(id=f"{handle.run_id}:b1", run_id=handle.run_id, label="later")]
        )
        state = await engine.index.wait(handle.run_id, lambda s: s.bookmarks == ["later"], 30)
        assert state is not None
        assert state.extensions["bookmarks"] == {"labels": ["later"]}
        release.set()
        result = await handle.result(timeout=30)
    assert result.output == "done"
    assert result.extras["bookmarks"] == ["later"]
    assert h.decode(h.message("history", bookmarked).value) == bookmarked


def test_the_package_s_features_fold_in_every_engine_through_default_plugins():
    names = {type(e).__name__ for p in default_plugins() for e in p.folds()}
    assert {"MachineFold", "CompensationFold", "WaitFold"} <= names
    assert all(p in Engine("memory://").plugins for p in DEFAULT_PLUGINS)
