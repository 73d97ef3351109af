"""The expanding node kind: dynamic tasks, fan-out and map-reduce are nodes with children.

An expanding node runs in two phases. First its *planner* runs as an ordinary task attempt and
returns child specs (``{"id": ..., "depends_on": [sibling ids], ...}``); the worker records
them in the node's ``TaskCompleted(expansion=[...])``, so the plan is durable and a restart
never re-plans. Then the kind decides: it schedules the children (respecting sibling
dependencies and ``max_parallel``), and when all of them completed it records
``TaskCollected`` with the node's output, computed by the pure ``collect``. A child that fails
for good fails the node. Each pattern supplies an :class:`Expander`; the three share the kind's
name ``expand`` in definition fingerprints.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import islice
from typing import Any, Protocol, runtime_checkable

import deerflow._codec as _codec
from deerflow.core import KindOptions, NodeKind, RunState, TaskDef, TaskState, WorkflowDef
from deerflow.core import history as h
from deerflow.core.decide_nodes import generation, on_failed_attempt, schedule
from deerflow.core.expand import child_task_id, validate_specs
from deerflow.core.state import EXPANDED, PENDING, RETRY_WAIT


@runtime_checkable
class Expander(Protocol):
    """What a pattern supplies for an expanding node (its ``expander`` option)."""

    #: children scheduled at once (``None``: no limit)
    max_parallel: int | None
    #: whether children see the node's upstream outputs in ``context.tasks``
    child_sees_upstream: bool

    def plan(self, returned: Any, node_id: str) -> list[dict[str, Any]]:
        """Turn what the planner returned into child specs (worker side, after the planner)."""
        ...

    def child_callable(self, spec: dict[str, Any]) -> Callable[..., Any]:
        """The body that runs one child; it receives the child's ``TaskContext``."""
        ...

    def collect(self, specs: Sequence[dict[str, Any]], outputs: Sequence[Any]) -> Any:
        """The node's output from its children's outputs, in spec order (pure)."""
        ...


class ExpandOptions(KindOptions):
    """An expanding node's options: its expander, and which pattern made it."""

    expander: Expander
    pattern: str


class ExpandingKind(NodeKind):
    """A node whose planner's answer becomes child tasks (see the module docstring)."""

    name = "expand"
    options_model = ExpandOptions

    def __init__(self, label: str) -> None:
        self.label = label

    @staticmethod
    def expander(node: TaskDef) -> Expander:
        """The node's expander."""
        return NodeKind.options(node, ExpandOptions).expander

    def on_output(self, task: TaskDef, output: Any) -> tuple[Any, list[dict[str, Any]] | None]:
        """The planner's answer becomes durable as the node's expansion."""
        planned = self.expander(task).plan(output, task.id)
        return None, validate_specs(task.id, _codec.to_json_value(planned))

    def child_inputs(
        self, wf: WorkflowDef, state: RunState, node: TaskDef, child_id: str
    ) -> tuple[Iterable[str], dict[str, Any]]:
        """A child sees its spec and the outputs of the siblings it depends on, plus the
        node's upstream if its pattern asks."""
        node_state = state.tasks[node.id].expansion
        assert node_state is not None
        spec = node_state.specs[child_id]
        deps = [child_task_id(node.id, d) for d in spec.get("depends_on", [])]
        extra = {"node": node.id, "spec": spec, "inputs": {d: state.tasks[d].output for d in deps}}
        visible = wf.ancestors(node.id) if self.expander(node).child_sees_upstream else ()
        return visible, extra

    def child_body(self, node: TaskDef, extra: Mapping[str, Any]) -> Callable[..., Any]:
        """The expander's body for the child's spec."""
        return self.expander(node).child_callable(extra["spec"])

    def decide(
        self, task: TaskDef, ts: TaskState, state: RunState, now: float, budget: int | None
    ) -> list[h.HistoryEvent]:
        """Once expanded: schedule, retry and collect the children."""
        if ts.status != EXPANDED:
            return []
        return on_expanded(task, ts, state, now, budget=budget)


DYNAMIC_TASKS = ExpandingKind("dynamic tasks")
PARALLEL_TASKS = ExpandingKind("parallel tasks")
MAP_REDUCE = ExpandingKind("map-reduce")


def on_expanded(
    node: TaskDef, ts: TaskState, state: RunState, now: float, *, budget: int | None = None
) -> list[h.HistoryEvent]:
    """Schedule ready children up to ``max_parallel``, retry failed ones, collect when done.

    ``budget`` (the run's free slots under ``Workflow(max_parallel=...)``) caps new children
    too, so a node with 10,000 ready children costs O(budget), not O(children), per decision.
    """
    exp = ts.expansion
    assert exp is not None
    run_id = state.run_id
    if exp.failed is not None:
        return _fail_expansion(node, ts, state, now)
    events: list[h.HistoryEvent] = []
    for child in sorted(exp.retrying):
        events.extend(on_failed_attempt(node, child, state.tasks[child], state, now))
    expander = ExpandingKind.expander(node)
    if exp.done:
        specs = [exp.specs[c] for c in exp.children]
        outputs = [state.tasks[c].output for c in exp.children]
        events.append(
            h.TaskCollected(
                id=h.event_id(run_id, node.id, "collected"),
                run_id=run_id,
                ts=now,
                task_id=node.id,
                output=expander.collect(specs, outputs),
            )
        )
        return events
    limit = expander.max_parallel
    capacity = len(exp.ready) if limit is None else max(0, limit - exp.running)
    if budget is not None:
        capacity = min(capacity, max(0, budget))
    events.extend(
        schedule(run_id, child, state.tasks[child].attempts + 1, now)
        for child in islice(exp.ready, capacity)
    )
    return events


def _fail_expansion(
    node: TaskDef, ts: TaskState, state: RunState, now: float
) -> list[h.HistoryEvent]:
    exp = ts.expansion
    assert exp is not None and exp.failed is not None
    run_id = state.run_id
    waiting = [c for c in exp.children if state.tasks[c].status in (PENDING, RETRY_WAIT)]
    if waiting:
        reason = f"sibling {exp.failed!r} failed"
        suffix = generation(state)
        return [
            h.TaskSkipped(
                id=h.event_id(run_id, c, "skipped", *suffix),
                run_id=run_id,
                ts=now,
                task_id=c,
                reason=reason,
            )
            for c in waiting
        ]
    if exp.running > 0:
        return []  # children still running: the node fails when they are done
    error = f"child {exp.failed!r} failed: {state.tasks[exp.failed].error}"
    return [
        h.TaskAbandoned(
            id=h.event_id(run_id, node.id, "abandoned", *generation(state)),
            run_id=run_id,
            ts=now,
            task_id=node.id,
            error=error,
        )
    ]
