"""The seam through which a feature or a node kind folds history events of its own.

A :class:`FoldExtension` declares the event types it adds (or folds) and keeps what it needs
in its part of ``RunState.extensions`` (JSON-like data only: a run state is data, snapshotted
as it is). :func:`deerflow.core.fold_registry.register_fold` makes the fold pass it its
events.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict

from deerflow.core import history as h
from deerflow.core.state import RunState

#: What a waiting node waits for (``for``: one line for people, e.g. ``signal 'approve'``) and
#: until when at most (``deadline``: epoch seconds, ``None``: no deadline). A ``for`` key
#: (a keyword) needs this form of TypedDict.
Wait = TypedDict("Wait", {"for": str, "deadline": float | None})


class FoldExtension:
    """A feature's part of the fold: the history events it adds and how each folds.

    Subclass it, set :attr:`key`, :attr:`event_classes` (the history event classes it adds,
    subclasses of :class:`~deerflow.core.history.HistoryEvent` with a new ``type``) and
    :attr:`handles` (what it folds: by default the types of :attr:`event_classes`), and
    override :meth:`fold`. Register it with
    :func:`~deerflow.core.fold_registry.register_fold` (a node kind lists it in
    ``NodeKind.folds``: adding a node of the kind to a workflow registers it). What it keeps
    goes in ``state.extensions[key]`` (:meth:`part`): dicts, lists and scalars only. The
    fold's rules hold for its events too: one after the run ended is not passed to it, nor is
    a repeat of one of the run's last :data:`~deerflow.core.repeats.SEEN_LIMIT` events known
    by id (every extension event is: a repeat arriving later is passed again, so a fold that
    can should ignore it by its content too).
    """

    #: its part of ``RunState.extensions`` (also what names it in errors)
    key: str = ""
    #: history event classes it adds
    event_classes: tuple[type[h.HistoryEvent], ...] = ()
    #: the types it folds; ``None``: those of :attr:`event_classes`
    handles: frozenset[str] | None = None
    #: the types of its events that end a run (they must set ``state.status``, see
    #: :func:`~deerflow.core.fold_runs.end_run`)
    terminal: frozenset[str] = frozenset()
    #: names its part reads as on a run state (``state.<name>``, see :meth:`attribute`)
    attributes: frozenset[str] = frozenset()
    #: what the run index keeps of its part in a run's row, to list runs by: filter name
    #: (``list_runs(<name>=value)``) -> key of its part (a scalar value)
    indexed: Mapping[str, str] = {}
    #: statuses :meth:`shown_status` may give a running run (a queued run has not ended)
    live_statuses: frozenset[str] = frozenset()

    def types(self) -> frozenset[str]:
        """The event types this extension folds."""
        if self.handles is not None:
            return self.handles
        return frozenset(h.type_name(cls) for cls in self.event_classes)

    def part(self, state: RunState) -> dict[str, Any]:
        """This extension's part of ``state`` (created empty on first use)."""
        part: dict[str, Any] = state.extensions.setdefault(self.key, {})
        return part

    def fold(self, state: RunState, event: h.HistoryEvent) -> bool:
        """Apply ``event`` (one of :meth:`types`) to ``state``; return whether it changed."""
        raise NotImplementedError

    def attribute(self, state: RunState, name: str) -> Any:
        """``state.<name>`` for each of :attr:`attributes`: read from this extension's part."""
        raise AttributeError(name)

    def result_fields(self, state: RunState) -> Mapping[str, Any]:
        """Fields of the run's :class:`~deerflow.RunResult` this extension fills in; none here."""
        return {}

    # Requests (``Engine.send``): an extension whose runs take them (a state machine's
    # transitions) overrides the three; the engine appends the event and waits for the answer.

    def request(
        self, run_id: str, request_id: str, name: str, payload: Any
    ) -> h.HistoryEvent | None:
        """The event asking run ``run_id`` to take request ``name``; ``None`` here: this
        extension's runs take no requests."""
        return None

    def answered(self, state: RunState, request_id: str) -> bool:
        """Whether ``state`` resolved request ``request_id`` (applied, refused or failed)."""
        return False

    def answer(self, state: RunState, request_id: str, name: str) -> None:
        """Raise what request ``request_id`` ended with when it was not applied (refused, or
        its code failed); return when it was."""

    def shown_status(self, state: RunState) -> str | None:
        """What a running ``state`` shows as its status (one of :attr:`live_statuses`) when
        this extension holds it before it starts; ``None`` here (see
        :func:`~deerflow.core.fold_registry.status_of`)."""
        return None

    def waits(self, state: RunState) -> dict[str, Wait]:
        """The nodes of ``state`` that wait on what this extension folds: task id -> what
        each waits for and until when (none by default).
        :func:`~deerflow.core.fold_registry.waits_of` reads every registered extension's, so
        the dashboard, the CLI and the API draw any wait alike."""
        return {}
