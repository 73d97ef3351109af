"""A node kind defined here, outside the package, works like the built-in ones.

Two kinds: ``constant`` is decided, never run (its value completes the attempt as it is
scheduled, with no worker), and ``scale`` is run by a worker from a body the kind supplies (the
task has no function), its recorded output shaped by the kind. Both take typed options, checked
when the node is added to its workflow.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from deerflow import DefinitionError, Engine, Workflow
from deerflow.core import KindOptions, NodeKind, TaskDef
from deerflow.core import history as h
from deerflow.core.state import RunState
from deerflow.log.base import TopicPartition
from deerflow.web import _graph as graph


class Constant(KindOptions):
    value: int


class ConstantKind(NodeKind):
    """Completes each attempt with its ``value`` as it is scheduled: no task message."""

    name = "constant"
    label = "constant"
    css_class = "constant"
    options_model = Constant

    def on_scheduled(
        self, task: TaskDef, state: RunState, attempt: int, now: float
    ) -> list[h.HistoryEvent]:
        return [
            h.TaskCompleted(
                id=h.event_id(state.run_id, task.id, attempt, "completed"),
                run_id=state.run_id,
                ts=now,
                task_id=task.id,
                attempt=attempt,
                output=self.options(task, Constant).value,
            )
        ]

    def runs_on_worker(self, task: TaskDef) -> bool:
        return False


class Scale(KindOptions):
    factor: int
    unit: str = "units"


class ScaleKind(NodeKind):
    """Multiplies its one upstream output on a worker; records ``{"value", "unit"}``."""

    name = "scale"
    label = "scale"
    options_model = Scale

    def body(self, task: TaskDef) -> Callable[..., Any]:
        factor = self.options(task, Scale).factor
        (source,) = task.depends_on

        def run(context: Any) -> int:
            return int(context.tasks[source].output) * factor

        return run

    def on_output(self, task: TaskDef, output: Any) -> tuple[Any, list[dict[str, Any]] | None]:
        return {"value": output, "unit": self.options(task, Scale).unit}, None


CONSTANT, SCALE = ConstantKind(), ScaleKind()


def priced() -> Workflow:
    wf = Workflow(name="priced")
    wf.add_task(TaskDef(id="base", fn=None, kind=CONSTANT, options={"value": 21}))
    wf.add_task(
        TaskDef(id="doubled", fn=None, depends_on=("base",), kind=SCALE, options={"factor": 2})
    )

    @wf.task(id="report", depends_on=["doubled"])
    def report(context):
        doubled = context.tasks["doubled"].output
        return f"{doubled['value']} {doubled['unit']}"

    return wf


async def run_history(engine: Engine, run_id: str) -> list[h.HistoryEvent]:
    """Run ``run_id``'s history as any process reads it back from the log."""
    events = []
    for tp in range(await engine.log.partition_count(engine.topics.history)):
        for record in await engine.log.read_partition(TopicPartition(engine.topics.history, tp)):
            event = h.decode(record.value)
            if event.run_id == run_id:
                events.append(event)
    return events


async def test_a_kind_from_outside_decides_and_runs_its_nodes(store):
    wf = priced()
    async with Engine(store, [wf]) as engine:
        result = await (await engine.start(wf)).result(timeout=60)
        history = await run_history(engine, result.run_id)
    assert result.status == "completed", result.error
    assert result.output == "42 units"
    assert result.tasks["base"].output == 21
    assert result.tasks["doubled"].output == {"value": 42, "unit": "units"}
    completed = {e.task_id: e for e in history if isinstance(e, h.TaskCompleted)}
    # The constant was decided by the run's owner; the scale ran on a worker.
    assert completed["base"].worker is None
    assert completed["doubled"].worker is not None
    scheduled = [e.task_id for e in history if isinstance(e, h.TaskScheduled)]
    assert scheduled == ["base", "doubled", "report"]
    # The dashboard draws a node as its kind says.
    laid_out = graph.build(result, wf, {}, {})
    drawn = {n["id"]: (n["kind"], n["label"]) for n in laid_out.as_json()["nodes"]}
    assert drawn == {
        "base": ("constant", "constant"),
        "doubled": ("task", "scale"),
        "report": ("task", "task"),
    }
    assert '<g class="node st-completed kind-constant" data-task="base"' in graph.svg(laid_out)


def test_a_kind_s_name_goes_into_the_fingerprint():
    plain = Workflow(name="priced")
    plain.add_task(TaskDef(id="base", fn=lambda context: 21))
    assert priced().fingerprint() == priced().fingerprint()
    other = Workflow(name="priced")
    other.add_task(TaskDef(id="base", fn=None, kind=CONSTANT, options={"value": 21}))
    assert other.fingerprint() != plain.fingerprint()


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"value": "lots"}, "value: Input should be a valid integer"),
        ({"value": 1, "valeu": 2}, "valeu: Extra inputs are not permitted"),
        ({}, "value: Field required"),
    ],
)
def test_a_bad_option_fails_at_definition_naming_the_workflow_and_task(options, problem):
    wf = Workflow(name="priced")
    with pytest.raises(DefinitionError) as caught:
        wf.add_task(TaskDef(id="base", fn=None, kind=CONSTANT, options=options))
    message = str(caught.value)
    assert message.startswith("workflow 'priced', task 'base': bad constant options: ")
    assert problem in message
    assert "base" not in wf.tasks


def test_a_kind_that_is_not_a_node_kind_is_refused():
    wf = Workflow(name="priced")
    with pytest.raises(DefinitionError, match="task 'base': kind must be a NodeKind"):
        wf.add_task(TaskDef(id="base", fn=None, kind="constant"))  # type: ignore[arg-type]
