"""``concurrency=`` and ``rate_limit=`` on :class:`~deerflow.Workflow` (``FlowMixin``).

A run of a workflow with flow control starts queued: its request is appended with its
:class:`~deerflow.flow._fold.RunQueued` (or, for a run requested otherwise, its owner records
it as it first decides the run), and it decides nothing until its gate admits it
(:mod:`deerflow.flow._service`). As it ends, it records
:class:`~deerflow.flow._fold.FlowReleased` before its terminal event, which frees its slot.
"""

from __future__ import annotations

from typing import Any

from deerflow.core import RunState, WorkflowDef
from deerflow.core import history as h
from deerflow.flow._fold import (
    FLOW_FOLD,
    BatchDue,
    FlowReleased,
    RunQueued,
    due_id,
    queued_id,
    released_id,
)
from deerflow.flow._service import FLOW
from deerflow.flow._spec import (
    Batch,
    Concurrency,
    Debounce,
    FlowSpec,
    RateLimit,
    flow_spec,
    key_value,
)

#: the durable timer a run a rate limit delays waits on
DELAY_TIMER = "flow:delay"
#: the durable timer of a batch's timeout
BATCH_TIMER = "flow:batch"


class FlowMixin(WorkflowDef):
    """Adds flow control (concurrency keys, rate limits) to a workflow's runs."""

    @property
    def flow_spec(self) -> FlowSpec | None:
        """The workflow's checked flow control, or ``None``."""
        spec: FlowSpec | None = self.__dict__.get("_flow_spec")
        return spec

    def set_flow(
        self,
        *,
        concurrency: Concurrency | None = None,
        rate_limit: RateLimit | None = None,
        debounce: Debounce | None = None,
        batch: Batch | None = None,
    ) -> None:
        """Gate this workflow's runs (see :class:`Concurrency`, :class:`RateLimit`,
        :class:`Debounce`, :class:`Batch`).

        Raises:
            DefinitionError: a bad option (a limit below 1, a period that does not parse, a
                key that is not a path into ``params`` or ``input``), naming the workflow.
        """
        spec = flow_spec(self.name, concurrency, rate_limit, debounce, batch)
        self.__dict__["_flow_spec"] = spec
        if spec is not None and FLOW not in self.plugins:
            self.plugins.append(FLOW)

    def decide_run(self, state: RunState, now: float) -> list[h.HistoryEvent] | None:
        """Queue a new run at its gate; wait for its admission (and its rate limit's delay);
        then decide as the workflow would, releasing the gate before a terminal event."""
        part = state.extensions.get(FLOW_FOLD.key)
        spec = self.flow_spec
        if part is None:
            if spec is not None and not state.tasks:
                return self._queue(spec, state, now)
        elif part.get("status") == "queued":
            return [] if spec is None else _due(state, spec, part, now)
        elif spec is not None and _retried(spec, state, part):
            return self._queue(spec, state, now)
        elif spec is not None and spec.split and not part.get("stage") and not part.get("released"):
            return self._queue_then(spec, state, part, now)  # its concurrency gate admitted it
        elif (delay := self._delay(state, part.get("not_before"), now)) is not None:
            return delay
        own = super().decide_run(state, now)
        if own and part is not None:
            return _released_before_end(state, own, now)
        return own

    def dispatch_extra(self, state: RunState) -> dict[str, Any]:
        """A batch's run: every run's trigger event (or params and input), oldest first."""
        extra = super().dispatch_extra(state)
        part = state.extensions.get(FLOW_FOLD.key)
        if part is None or self.flow_spec is None or self.flow_spec.batch_size is None:
            return extra
        members = sorted(
            [member_of(state), *part.get("batch", [])], key=lambda m: m.get("requested_at") or 0
        )
        return {**extra, "trigger_events": members}

    def ending_reports_to(self, state: RunState) -> list[h.ParentRef]:
        """A batch's run: the parent tasks of the sub-workflow runs it took hear of its end
        (its output, or why it did not complete) as its own parent's does."""
        parents = super().ending_reports_to(state)
        part = state.extensions.get(FLOW_FOLD.key)
        if part is None:
            return parents
        return [
            *parents,
            *(
                h.ParentRef.model_validate(member["parent"])
                for member in part.get("batch", [])
                if isinstance(member.get("parent"), dict)
            ),
        ]

    def on_ending(self, state: RunState, now: float) -> list[h.HistoryEvent]:
        """A gated run frees its slot (or its queue place) as it ends."""
        before = super().on_ending(state, now)
        return [*before, *_releases(state, now)]

    def request_events(self, request: h.RunRequested) -> list[h.HistoryEvent]:
        """A run of a workflow with flow control is queued with its request (one write, and
        ``queued`` from the start); a run without its key's value fails as its owner decides it."""
        events = super().request_events(request)
        spec = self.flow_spec
        if spec is None:
            return events
        member = _member(
            request.run_id,
            request.ts,
            request.trigger,
            request.params,
            request.input,
            request.parent,
        )
        queued = self._queued(
            spec,
            request.run_id,
            request.params,
            request.input,
            request.ts,
            member=member,
            priority=request.priority,
            parent=request.parent,
            requested_at=request.ts,
        )
        return events if isinstance(queued, str) else [*events, queued]

    def _queue(self, spec: FlowSpec, state: RunState, now: float) -> list[h.HistoryEvent]:
        queued = self._queued(
            spec,
            state.run_id,
            state.params,
            state.input,
            now,
            member=member_of(state),
            priority=state.priority,
            parent=state.parent,
            requested_at=state.started_at or now,
            retry=state.retries,
        )
        if isinstance(queued, str):
            return [
                h.RunFailed(
                    id=h.event_id(state.run_id, "failed", "flow"),
                    run_id=state.run_id,
                    ts=now,
                    error=f"flow control: {queued}",
                )
            ]
        return [queued]

    def _queued(
        self,
        spec: FlowSpec,
        run_id: str,
        params: Any,
        input: Any,
        now: float,
        *,
        member: dict[str, Any],
        priority: int,
        parent: h.ParentRef | None,
        requested_at: float,
        retry: int = 0,
    ) -> RunQueued | str:
        """The run's ``RunQueued`` at its first gate, or why it has no key value."""
        value, error = key_value(spec.key, params, input)
        if error is None and spec.split:
            error = key_value(spec.rate_key, params, input)[1]  # checked before it waits
        if error is not None:
            return error
        return RunQueued(
            id=queued_id(run_id, retry),
            run_id=run_id,
            ts=now,
            workflow=self.name,
            key=f"{self.name}/{value}",
            limits=spec.limits(0),
            stages=2 if spec.split else 1,
            priority=priority,
            requested_at=requested_at,
            member=None if spec.batch_size is None else member,
            retry=retry,
            parent=parent,
        )

    def _queue_then(
        self, spec: FlowSpec, state: RunState, part: dict[str, Any], now: float
    ) -> list[h.HistoryEvent]:
        """The run holds its concurrency slot: it queues at its rate limit's gate (the last
        before it starts, so that its start is the one the rate limit counted)."""
        value, _ = key_value(spec.rate_key, state.params, state.input)
        retry = part.get("retry", 0)
        return [
            RunQueued(
                id=queued_id(state.run_id, retry, 1),
                run_id=state.run_id,
                ts=now,
                workflow=self.name,
                key=f"{self.name}:rate/{value}",
                limits=spec.limits(1),
                priority=state.priority,
                requested_at=state.started_at or now,
                retry=retry,
                parent=state.parent,  # told if this gate drops the run
                stage=1,
                prior=part["key"],
            )
        ]

    @staticmethod
    def _delay(
        state: RunState, not_before: float | None, now: float
    ) -> list[h.HistoryEvent] | None:
        """While a rate limit delays the run: its timer (once), then nothing until it fires."""
        if not_before is None or now >= not_before:
            return None
        return _timer(state, DELAY_TIMER, not_before, now)


def member_of(state: RunState) -> dict[str, Any]:
    """What a run brings to its batch: its id, when it was requested, its trigger event,
    params and input, and its parent's task (a sub-workflow run)."""
    return _member(
        state.run_id, state.started_at, state.trigger, state.params, state.input, state.parent
    )


def _member(
    run_id: str,
    requested_at: float | None,
    trigger: Any,
    params: Any,
    input: Any,
    parent: h.ParentRef | None,
) -> dict[str, Any]:
    member = {
        "run_id": run_id,
        "requested_at": requested_at,
        "trigger": trigger,
        "params": params,
        "input": input,
    }
    if parent is not None:  # told the batch run's outcome as the batch run ends
        member["parent"] = parent.model_dump()
    return member


def _due(state: RunState, spec: FlowSpec, part: dict[str, Any], now: float) -> list[h.HistoryEvent]:
    """A queued run that waits for a time: a batch's timeout, or the debounce its gate set
    (:class:`~deerflow.flow._fold.RunDebounced`); its timer, then :class:`BatchDue` once."""
    if part.get("due") or part.get("retry"):
        return []  # due once; a retry waits for its slot alone
    if spec.batch_timeout is not None:
        fire_at = (state.started_at or now) + spec.batch_timeout
    elif part.get("due_at") is not None:
        fire_at = float(part["due_at"])
    else:
        return []  # waits for its gate alone
    if now >= fire_at:
        key = part["key"]
        return [BatchDue(id=due_id(state.run_id), run_id=state.run_id, ts=now, key=key)]
    return _timer(state, BATCH_TIMER, fire_at, now)


def _timer(state: RunState, timer: str, fire_at: float, now: float) -> list[h.HistoryEvent]:
    """Start the run's durable timer ``timer`` (once: nothing while it runs)."""
    if timer in state.timers:
        return []
    return [h.timer_started(state.run_id, timer, fire_at, now)]


def _releases(state: RunState, now: float) -> list[h.HistoryEvent]:
    """A gated run's slots (or queue places) freed, at each gate it reached, as it ends."""
    part = state.extensions.get(FLOW_FOLD.key)
    if part is None or part.get("released"):
        return []
    retry = part.get("retry", 0)
    return [
        FlowReleased(
            id=released_id(state.run_id, retry, stage),
            run_id=state.run_id,
            ts=now,
            key=key,
            retry=retry,
            stage=stage,
        )
        for stage, key in enumerate(part.get("keys") or [part["key"]])
    ]


def _retried(spec: FlowSpec, state: RunState, part: dict[str, Any]) -> bool:
    """Whether an operator retried the run since its gate last saw it: a run of a workflow
    with a concurrency or rate limit queues again for a slot (its burst or batch stands: a
    debounced or batched run alone goes on at once)."""
    return state.retries > part.get("retry", 0) and (
        spec.concurrency is not None or spec.rate is not None
    )


def _released_before_end(
    state: RunState, events: list[h.HistoryEvent], now: float
) -> list[h.HistoryEvent]:
    """``events`` of a run deciding itself (a state machine), its releases before its end."""
    for i, event in enumerate(events):
        if event.run_id == state.run_id and event.type in h.TERMINAL_TYPES:
            return [*events[:i], *_releases(state, now), *events[i:]]
    return events
